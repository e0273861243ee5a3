"""What a squeeze compresses: every module update of one checkpoint, read by :mod:`lab.checkpoints`.

A PEFT LoRA adapter or an MPS adapter gives factors (B, A, s) (MPS: A_MPS contracted from its
cores); a full fine-tune with its base gives the dense ΔW = W_ft − W_base (modules whose ΔW is
exactly zero, the frozen ones, are left out). DoRA's update is not low rank (its magnitudes
rescale W's rows), so a DoRA adapter is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lab.checkpoints import TensorLoader, discover, open_base, plan_reads, read_module
from lab.checkpoints.records import Part
from lab.deltas import Factors
from lab.errors import InputError


@dataclass
class Target:
    """One module's update, whole (a fused projection is not split), in the (out, in) layout."""

    module: str
    layer: int | None
    role: str
    kind: str  # lora, mps or full
    update: Factors | np.ndarray
    params: int
    embedding: bool = False
    conv1d: bool = False

    @property
    def rank_in(self) -> int:
        return self.update.rank_bound if isinstance(self.update, Factors) else min(self.update.shape)


@dataclass
class Input:
    """The checkpoint squeezed: its targets, PEFT config template, dtype, and where it came from."""

    path: Path
    name: str
    step: int | None
    kind: str
    targets: list[Target]
    template: dict
    dtype: str
    base_path: str | None


def read_input(path: str | Path, base: str | Path | None = None, modules: str | None = None) -> Input:
    """The updates of the one checkpoint at ``path`` (an adapter folder, an MPS adapter folder, or a
    full model with ``base``); one-line LabErrors for anything else."""
    path = Path(path)
    found = discover(path)
    if len(found) != 1:
        raise InputError(f"{path}: holds {len(found)} checkpoints; lab squeeze takes one (pick a checkpoint-N/ folder)")
    ckpt = found[0]
    if ckpt.format in ("kohya", "diffusers"):
        raise InputError(f"{path}: an image-model LoRA file ({ckpt.format}); lab squeeze writes PEFT adapters of language "
                         "models and does not take it (lab analyze reads its spectra and energy ranks)")
    if ckpt.format == "full" and base is None:
        raise InputError(f"{path}: a full fine-tune; squeezing it into a LoRA needs --base (the model it was trained from)")
    opened = open_base(base) if base is not None else None
    reads = plan_reads(ckpt, opened if ckpt.format == "full" else None, modules=modules)
    if any(r.use_dora for r in reads):
        raise InputError(f"{ckpt.layout.config}: a DoRA adapter; its update rescales the base weight's rows and is not low rank, so lab squeeze does not compress it")
    targets = []
    dtypes = set()
    with TensorLoader() as loader:
        for spec in reads:
            whole = replace(spec, parts=(Part(spec.module, spec.role),))
            (delta,) = read_module(whole, loader, None)
            info = spec.B if spec.B is not None else spec.tensor
            dtypes.add(info.dtype)
            if delta.factors is None and not np.any(delta.matrix):
                continue  # a frozen module of a full fine-tune
            # a full fine-tune's embedding table becomes PEFT's LoRA embedding (lora_embedding_A/B)
            embedding = spec.embedding or (spec.kind == "full" and spec.role == "embed")
            update = delta.to_dense() if delta.kron is not None else delta.matrix  # squeezed as a dense ΔW
            targets.append(Target(spec.module, spec.layer, spec.role, spec.kind, update, spec.params(),
                                  embedding, spec.conv1d))
    if not targets:
        raise InputError(f"{path}: no module update to squeeze" + (f" matching --modules {modules!r}" if modules else "") + " (every ΔW is zero)")
    template, base_path = _template(ckpt, opened.path if opened is not None else base, targets)  # a hub name: its snapshot
    dtype = sorted(dtypes)[0] if len(dtypes) == 1 else "F32"
    return Input(path, ckpt.name, ckpt.step, ckpt.format if ckpt.format != "adapter" else "lora", targets, template, dtype, base_path)


def _template(ckpt, base, targets: list[Target]) -> tuple[dict, str | None]:
    """The PEFT config the output starts from: the input's own (adapters), or a fresh LoRA config."""
    if ckpt.format == "adapter":
        config = json.loads(Path(ckpt.layout.config).read_text())
        return config, config.get("base_model_name_or_path")
    if ckpt.format == "mps":
        base_path = json.loads(Path(ckpt.layout.config).read_text()).get("base_model_name_or_path")
    else:
        base_path = str(Path(base).resolve())
    return {"base_model_name_or_path": base_path, "bias": "none", "fan_in_fan_out": any(t.conv1d for t in targets),
            "inference_mode": True, "init_lora_weights": True, "lora_dropout": 0.0, "peft_type": "LORA",
            "task_type": None}, base_path
