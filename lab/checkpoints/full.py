"""Dense updates W_ft − W_base of a full fine-tune: which tensor pairs to read.

Every 2-D floating tensor the fine-tune shares with the base becomes a module read (kind
``full``); 1-D tensors (norms, biases) and integer buffers are left out, and so are tensors
present on one side only (e.g. a tied ``lm_head``). Pairing and shapes are checked from the
indexes before any tensor is read.
"""

from __future__ import annotations

from typing import Callable

from lab.checkpoints import fused
from lab.checkpoints.naming import module_name, natural_key, strip_weight
from lab.checkpoints.records import Base, Checkpoint, ModuleRead
from lab.errors import InputError, MatchError, ShapeError


def plan_full(ckpt: Checkpoint, base: Base | None, select: Callable[[str], bool], allow_nonfinite: bool,
              fmt: str) -> list[ModuleRead]:
    """The module reads of a full checkpoint against ``base``, pairs and shapes checked now."""
    if base is None:
        raise InputError(f"{ckpt.path}: a full model checkpoint needs the model it was fine-tuned from: pass --base BASE")
    index = ckpt.index
    model_type = ckpt.model_type or base.model_type
    pairs = []
    for key, info in index.tensors.items():
        if len(info.shape) != 2 or not info.floating:
            continue
        base_key = base.keys.find(key, info.file)
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
        files = ", ".join(str(f) for f in index.files)
        raise MatchError(f"{files}: shares no 2-D weight with the base {base.path}; pass the model it was fine-tuned from")
    # Pickled shards are loaded whole, so visit them file by file; safetensors reads are per tensor.
    files = {f: i for i, f in enumerate(index.files)}
    pickled = any(info.file.suffix != ".safetensors" for info in index.tensors.values())
    pairs.sort(key=lambda p: (files[index[p[0]].file] if pickled else 0, natural_key(p[0])))
    out = []
    for key, base_key in pairs:
        name = module_name(strip_weight(key), model_type)
        info = index[key]
        shape = info.shape[::-1] if name.conv1d else info.shape  # Conv1D stores (in, out)
        chosen = fused.selected(fused.parts(name, shape[0]), select)
        if not chosen:
            continue
        out.append(ModuleRead(
            checkpoint=ckpt.name, format=fmt, module=name.module, layer=name.layer, role=name.role, kind="full",
            shape=(int(shape[0]), int(shape[1])), parts=chosen, tensor=info, base=base.index[base_key],
            conv1d=name.conv1d, allow_nonfinite=allow_nonfinite,
        ))
    return out
