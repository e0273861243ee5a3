"""Factored updates s·B·A of a PEFT LoRA adapter (and DoRA's): which tensors to read.

The factors are always stored (out, r) and (r, in) for the *module's* in/out, whatever
``fan_in_fan_out`` says (that flag only tells PEFT the base weight is a Conv1D stored
(in, out)), so B·A is already in the Delta's (out, in) layout. PEFT's own
``get_delta_weight`` returns the transpose for Conv1D. Embedding adapters are stored as
``lora_embedding_A`` (r, num_embeddings) and ``lora_embedding_B`` (dim, r) and PEFT's update
is (B·A)ᵀ·s in the table's (num_embeddings, dim) layout, so the Delta's factors are
B' = Aᵀ, A' = Bᵀ (done on reading, :mod:`lab.checkpoints.module_delta`).
"""

from __future__ import annotations

from typing import Callable

from lab.checkpoints import fused
from lab.checkpoints.adapter_config import AdapterConfig
from lab.checkpoints.adapter_weights import AdapterModule, adapter_modules, check_modules
from lab.checkpoints.naming import ModuleName, module_name, natural_key
from lab.checkpoints.records import Base, Checkpoint, ModuleRead
from lab.errors import MatchError, ShapeError


def plan_adapter(ckpt: Checkpoint, base: Base | None, select: Callable[[str], bool], allow_nonfinite: bool,
                 fmt: str) -> list[ModuleRead]:
    """The module reads of an adapter; every base lookup is checked now, before any read."""
    config = AdapterConfig.read(ckpt.layout.config)
    modules = adapter_modules(ckpt.index)
    check_modules(modules, config, ckpt.layout.weights[0])
    model_type = base.model_type if base is not None else None
    out = []
    for m in sorted(modules, key=lambda m: natural_key(m.module)):
        name = module_name(m.module, model_type)
        chosen = fused.selected(fused.parts(name, m.shape[0]), select)
        if not chosen:
            continue
        out.append(ModuleRead(
            checkpoint=ckpt.name, format=fmt, module=name.module, layer=name.layer, role=name.role,
            kind="dora" if config.use_dora else "lora", shape=m.shape, parts=chosen,
            base=base.index[_base_key(m, name, base)] if base is not None else None,
            A=m.A, B=m.B, magnitude=m.magnitude, scale=config.scale(m.module), embedding=m.embedding,
            scale_source=f"{config.path}: {config.scale_source(m.module)}",
            conv1d=name.conv1d and not m.embedding, use_dora=config.use_dora, allow_nonfinite=allow_nonfinite,
        ))
    return out


def _base_key(m: AdapterModule, name: ModuleName, base: Base) -> str:
    """The base tensor of adapter module ``m``: MatchError if absent, ShapeError if it disagrees."""
    wanted = f"{m.module}.weight"
    key = base.keys.find(wanted, m.A.file)
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
