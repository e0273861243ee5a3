"""Factored updates s·B·A of a PEFT LoRA adapter (and DoRA's effective update with a base).

The factors are always stored (out, r) and (r, in) for the *module's* in/out, whatever
``fan_in_fan_out`` says (that flag only tells PEFT the base weight is a Conv1D stored
(in, out)), so B·A is already in the Delta's (out, in) layout. PEFT's own
``get_delta_weight`` returns the transpose for Conv1D. Embedding adapters are stored as
``lora_embedding_A`` (r, num_embeddings) and ``lora_embedding_B`` (dim, r) and PEFT's update
is (B·A)ᵀ·s in the table's (num_embeddings, dim) layout, so the Delta's factors are
B' = Aᵀ, A' = Bᵀ.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from lab.checkpoints.adapter_config import AdapterConfig
from lab.checkpoints.adapter_weights import AdapterModule, adapter_modules, check_modules
from lab.checkpoints.base import Base
from lab.checkpoints.discover import Checkpoint, checked_layout
from lab.checkpoints.dora import NOTE_NO_BASE, dora_update
from lab.checkpoints.fused import split_fused
from lab.checkpoints.loader import LazyLoader
from lab.checkpoints.index import TensorIndex
from lab.checkpoints.naming import ModuleName, module_name, natural_key
from lab.deltas import Delta
from lab.errors import MatchError, ShapeError


def adapter_deltas(ckpt: Checkpoint, base: Base | None, select: Callable[[str], bool], allow_nonfinite: bool) -> Iterator[Delta]:
    """The per-module updates of an adapter; every base lookup is checked now, before any read."""
    _, layout = checked_layout(ckpt.path)
    config = AdapterConfig.read(layout.config)
    index = layout.index()
    modules = adapter_modules(index)
    check_modules(modules, config, layout.weights[0])
    model_type = base.model_type if base is not None else None
    plan: list[tuple[AdapterModule, ModuleName, str | None]] = []
    for m in sorted(modules, key=lambda m: natural_key(m.module)):
        name = module_name(m.module, model_type)
        if not any(select(n) for n in name.part_names()):
            continue
        plan.append((m, name, _base_key(m, name, base) if base is not None else None))
    return _read(plan, config, index, base, allow_nonfinite, select)


def _read(
    plan: list[tuple[AdapterModule, ModuleName, str | None]], config: AdapterConfig, index: TensorIndex,
    base: Base | None, allow_nonfinite: bool, select: Callable[[str], bool],
) -> Iterator[Delta]:
    """The Deltas of a checked plan, reading one module's factors (and base weight) at a time."""
    with LazyLoader(index, allow_nonfinite=allow_nonfinite) as ad, LazyLoader(base.index if base else index, allow_nonfinite=allow_nonfinite) as bl:
        for m, name, base_key in plan:
            A, B = ad.get(m.A.key), ad.get(m.B.key)
            if m.embedding:  # PEFT's update is (B·A)ᵀ·s in the table's layout: factors Aᵀ, Bᵀ
                A, B = np.ascontiguousarray(B.T), np.ascontiguousarray(A.T)
            scale = config.scale(m.module)
            W = None
            if base_key is not None:
                W = bl.get(base_key)
                W = np.ascontiguousarray(W.T) if name.conv1d and not m.embedding else W  # Conv1D: (in, out)
            common = dict(module=name.module, layer=name.layer, role=name.role, shape=m.shape)
            if not config.use_dora:
                delta = Delta(kind="lora", B=B, A=A, scale=scale, base=W, **common)
            elif W is None:
                delta = Delta(kind="dora", B=B, A=A, scale=scale, note=NOTE_NO_BASE, **common)
            else:
                magnitude = ad.get(m.magnitude.key)
                dense = dora_update(W, B, A, scale, magnitude, per_column=m.embedding)
                delta = Delta(kind="dora", dense=dense, base=W, **common)
            yield from (d for d in split_fused(delta, name) if select(d.module))


def _base_key(m: AdapterModule, name: ModuleName, base: Base) -> str:
    """The base tensor of adapter module ``m``: MatchError if absent, ShapeError if it disagrees."""
    wanted = f"{m.module}.weight"
    key = base.keys.find(wanted)
    if key is None:
        raise MatchError(
            f"{base.path}: no tensor '{wanted}' (nor one under another prefix) for adapter module '{m.module}' "
            f"of {m.A.file}; pass the base the adapter was trained on"
        )
    info = base.index[key]
    stored = m.shape[::-1] if name.conv1d and not m.embedding else m.shape
    if info.shape != stored:
        raise ShapeError(
            f"{info.file}: tensor '{key}' is {list(info.shape)} but the adapter's '{m.module}' in {m.A.file} "
            f"updates a {list(stored)} weight; pass the base the adapter was trained on"
        )
    return key
