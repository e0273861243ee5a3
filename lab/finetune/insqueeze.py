"""In-Squeeze: LoRA-Squeeze's in-tuning variant, the adapter's rank annealed during training.

LoRA-Squeeze (Vulić et al., arXiv 2602.10993) trains at a source rank R and compresses the update
by its SVD to a target rank K: after training (Post-Squeeze), after training followed by a few steps
at K (Cont-Squeeze, ``lab squeeze --steps``), or gradually during training (In-Squeeze, here; the
abstract: "a gradual, in-tuning rank annealing variant of LoRA-Squeeze consistently achieves the best
LoRA size-performance trade-off").

**Schedule.** The paper's exact annealing schedule was not in the text the lab could read (its
abstract and summaries only), so the schedule here is linear and documented: over the n = S2 − S1 + 1
steps S1 … S2 the rank after step t is

    r(t) = K + ⌈(R − K)·(S2 − t)/n⌉        (R before S1, K from S2 on),

the line from R at step S1 − 1 to K at S2 rounded up (never cut below it): non-increasing, above K
until S2 and exactly K there. Linear in the rank because it removes ranks evenly in time with one
parameter pair (S1, S2); a truncation happens only at steps where r(t) drops. Default window: the middle half of the run (``FinetuneConfig.squeeze_window``).

**Truncation.** After the optimiser step t, every LoRA module's update s·B·A (s = PEFT's scaling,
kept constant: the run stays at its α/R scale throughout) is replaced by its best rank-r(t)
approximation (Eckart–Young), computed exactly from the factors in float64: thin QR of B and of Aᵀ,
the SVD U·Σ·Vᵀ of B·A from the small core, then B' = U_k·√Σ_k and A' = √Σ_k·V_kᵀ, so that s·B'·A'
is the rank-k truncation of s·B·A. The saved checkpoint's adapter_config.json holds
r = r(t) and lora_alpha = s·r(t) (s·√r(t) with rsLoRA), so PEFT loads it at its current rank with
the same scale.

**Optimiser.** The truncated factors are new coordinates (rotated and cut), so AdamW's moments of the
old ones describe other parameters: at every truncation the optimiser is rebuilt over the new
factors with empty state (moments zero, bias correction restarting at 1). That is a reset, not a
projection; it is recorded in ``finetune_config.json`` under ``in_squeeze``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lab.errors import InputError


def schedule(r: int, k: int, s1: int, s2: int) -> list[tuple[int, int]]:
    """The (step, rank) pairs at which the rank drops: after step t the adapter has rank r(t)."""
    n = s2 - s1 + 1
    out, current = [], r
    for t in range(s1, s2 + 1):
        rank = k + -((-(r - k) * (s2 - t)) // n)  # ⌈(r − k)·(s2 − t)/n⌉ in integers
        if rank < current:
            out.append((t, rank))
            current = rank
    return out


def rank_at(drops: list[tuple[int, int]], r: int, step: int) -> int:
    """The adapter's rank after ``step`` under the schedule ``drops`` (``r`` before the first)."""
    rank = r
    for t, k in drops:
        if t <= step:
            rank = k
    return rank


def lora_layers(model) -> list[tuple[str, object]]:
    """(name, layer) of every LoRA layer of the PEFT model (its default adapter)."""
    from peft.tuners.lora import LoraLayer

    found = [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer) and "default" in m.lora_A]
    for name, m in found:
        if not isinstance(m.lora_A["default"], torch.nn.Linear) or m.use_dora.get("default", False):
            raise InputError(f"{name}: In-Squeeze truncates plain linear LoRA layers; this one is not")
    return found


def truncated_factors(B: np.ndarray, A: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(B', A') with B'·A' the best rank-k approximation of B·A: B' = U_k·√Σ_k, A' = √Σ_k·V_kᵀ,
    from thin QRs of B and Aᵀ and the SVD of the r × r core (float64; never the m × n product)."""
    q_b, r_b = np.linalg.qr(B)
    q_a, r_a = np.linalg.qr(A.T)
    u, sigma, vt = np.linalg.svd(r_b @ r_a.T)
    root = np.sqrt(sigma[:k])
    return (q_b @ u[:, :k]) * root, root[:, None] * (vt[:k] @ q_a.T)


def truncate(model, k: int) -> None:
    """Truncate every LoRA layer of ``model`` to rank ``k`` in place (scaling unchanged) and set
    its PEFT config to r = k with the α that keeps the scale."""
    layers = lora_layers(model)
    scales = set()
    for _, m in layers:
        lin_a, lin_b = m.lora_A["default"], m.lora_B["default"]
        B = lin_b.weight.detach().double().cpu().numpy()
        A = lin_a.weight.detach().double().cpu().numpy()
        b, a = truncated_factors(B, A, k)
        dtype = lin_a.weight.dtype
        # the Linear modules stay (creating new ones would draw their initialisation from torch's generator)
        trainable = lin_a.weight.requires_grad
        lin_a.weight = torch.nn.Parameter(torch.from_numpy(a).to(dtype).contiguous(), requires_grad=trainable)
        lin_b.weight = torch.nn.Parameter(torch.from_numpy(b).to(dtype).contiguous(), requires_grad=trainable)
        lin_a.out_features, lin_b.in_features = k, k
        m.r["default"] = k
        scales.add(m.scaling["default"])
    config = model.peft_config["default"]
    if len(scales) != 1 or config.rank_pattern or config.alpha_pattern:
        raise InputError("In-Squeeze needs one LoRA scale for every module (no rank_pattern or alpha_pattern)")
    s = scales.pop()
    config.r = k
    config.lora_alpha = s * (math.sqrt(k) if config.use_rslora else k)


def record(config, r: int, alpha: float, drops: list[tuple[int, int]]) -> dict:
    """What ``finetune_config.json`` says of an In-Squeeze run."""
    s1, s2 = config.squeeze_window
    scale = alpha / (math.sqrt(r) if config.rslora else r)
    return {"from": r, "to": config.squeeze_to, "steps": [s1, s2], "schedule": "linear",
            "rule": "r(t) = K + ceil((R - K) * (S2 - t) / (S2 - S1 + 1)) for S1 <= t <= S2",
            "ranks": [[t, k] for t, k in drops], "scale": scale,
            "truncation": "exact SVD of s*B*A from the factors after the optimiser step; scale kept",
            "optimizer": "AdamW rebuilt with empty state at every truncation (moments reset)"}
