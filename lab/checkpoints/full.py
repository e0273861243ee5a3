"""Dense updates W_ft − W_base of a full fine-tune, one tensor pair at a time.

Every 2-D floating tensor the fine-tune shares with the base becomes a Delta (kind ``full``);
1-D tensors (norms, biases) and integer buffers are left out, and so are tensors present on
one side only (e.g. a tied ``lm_head``). Pairing and shapes are checked from the indexes
before any tensor is read.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from lab.checkpoints.base import Base
from lab.checkpoints.discover import Checkpoint, checked_layout
from lab.checkpoints.fused import split_fused
from lab.checkpoints.index import TensorIndex
from lab.checkpoints.loader import LazyLoader
from lab.checkpoints.naming import module_name, natural_key, strip_weight
from lab.deltas import Delta
from lab.errors import InputError, MatchError, ShapeError


def full_deltas(ckpt: Checkpoint, base: Base | None, select: Callable[[str], bool], allow_nonfinite: bool) -> Iterator[Delta]:
    """The dense per-module updates of a full checkpoint against ``base`` (pairs checked now)."""
    if base is None:
        raise InputError(f"{ckpt.path}: a full model checkpoint needs the model it was fine-tuned from: pass --base BASE")
    _, layout = checked_layout(ckpt.path)
    index = layout.index()
    model_type = layout.model_type() or base.model_type
    pairs = []
    for key, info in index.tensors.items():
        if len(info.shape) != 2 or not info.floating:
            continue
        base_key = base.keys.find(key)
        if base_key is None:
            continue
        base_info = base.index[base_key]
        if base_info.shape != info.shape:
            raise ShapeError(
                f"{info.file}: tensor '{key}' is {list(info.shape)} but '{base_key}' in {base_info.file} is "
                f"{list(base_info.shape)}; is {base.path} the model this was fine-tuned from?"
            )
        if base_info.floating:
            pairs.append((key, base_key))
    if not pairs:
        raise MatchError(f"{ckpt.path}: shares no 2-D weight with the base {base.path}; pass the model it was fine-tuned from")
    # Pickled shards are loaded whole, so visit them file by file; safetensors reads are per tensor.
    files = {f: i for i, f in enumerate(index.files)}
    pickled = any(info.file.suffix != ".safetensors" for info in index.tensors.values())
    pairs.sort(key=lambda p: (files[index[p[0]].file] if pickled else 0, natural_key(p[0])))
    return _read(pairs, index, base, model_type, select, allow_nonfinite)


def _read(
    pairs: list[tuple[str, str]], index: TensorIndex, base: Base, model_type: str | None,
    select: Callable[[str], bool], allow_nonfinite: bool,
) -> Iterator[Delta]:
    """The Deltas of checked (fine-tuned key, base key) pairs, one pair in memory at a time."""
    with LazyLoader(index, allow_nonfinite=allow_nonfinite) as ft, LazyLoader(base.index, allow_nonfinite=allow_nonfinite) as bl:
        for key, base_key in pairs:
            name = module_name(strip_weight(key), model_type)
            if not any(select(n) for n in name.part_names()):
                continue
            W_ft, W = ft.get(key), bl.get(base_key)
            if name.conv1d:  # Conv1D stores (in, out); a Delta is (out, in)
                W_ft, W = W_ft.T, W.T
            dense = np.ascontiguousarray(W_ft - W)
            delta = Delta(module=name.module, layer=name.layer, role=name.role, kind="full", shape=dense.shape, dense=dense, base=np.ascontiguousarray(W))
            yield from (d for d in split_fused(delta, name) if select(d.module))
