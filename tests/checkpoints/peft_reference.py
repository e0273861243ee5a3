"""PEFT's own numbers for an adapter, the independent reference the checkpoint tests compare with.

Everything is computed by PEFT itself on a float64 copy of the model (the float32 factors
upcast exactly), then put in the lab's layout: (out, in) for Linear/Conv1D modules (PEFT's
``get_delta_weight`` returns Conv1D's (in, out)), the stored (num_embeddings, dim) layout for
embeddings (what PEFT already returns).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from peft.tuners.lora import LoraLayer


@dataclass
class Reference:
    lowrank: np.ndarray  # PEFT's get_delta_weight: s·B·A
    base: np.ndarray  # the module's base weight
    scale: float
    r: int
    conv1d: bool  # the base is a Conv1D stored (in, out)
    effective: np.ndarray | None = None  # merged − base (DoRA), when asked for


def peft_reference(peft_model, merged: bool = False, adapter: str = "default") -> dict[str, Reference]:
    """Per adapted module (named as the lab names it): PEFT's update, base weight, scale and r."""
    pm = copy.deepcopy(peft_model).double()
    refs = {}
    for name, module in pm.base_model.model.named_modules():
        if not isinstance(module, LoraLayer) or not (adapter in module.lora_A or adapter in module.lora_embedding_A):
            continue
        embedding = adapter in module.lora_embedding_A
        conv1d = bool(getattr(module, "fan_in_fan_out", False)) and not embedding

        def layout(t, conv1d=conv1d):
            a = t.detach().numpy().astype(np.float64)
            return a.T.copy() if conv1d else a

        refs[name] = Reference(
            lowrank=layout(module.get_delta_weight(adapter)),
            base=layout(module.get_base_layer().weight),
            scale=float(module.scaling[adapter]),
            r=int(module.r[adapter]),
            conv1d=conv1d,
        )
    if merged:
        state = copy.deepcopy(pm).merge_and_unload().state_dict()
        for name, ref in refs.items():
            W = state[f"{name}.weight"].detach().numpy().astype(np.float64)
            W = W.T if ref.conv1d else W
            ref.effective = W - ref.base
    return refs


def expected_parts(name: str, matrix: np.ndarray) -> dict[str, np.ndarray]:
    """GPT-2's c_attn holds [q; k; v] by rows of the (out, in) matrix; other modules are whole."""
    if name.endswith("attn.c_attn"):
        n = matrix.shape[0] // 3
        return {f"{name}.{part}": matrix[i * n : (i + 1) * n] for i, part in enumerate("qkv")}
    return {name: matrix}


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """‖got − want‖_F / ‖want‖_F (absolute when want is zero)."""
    assert got.shape == want.shape, (got.shape, want.shape)
    denom = np.linalg.norm(want)
    return float(np.linalg.norm(got - want) / (denom if denom > 0 else 1.0))
