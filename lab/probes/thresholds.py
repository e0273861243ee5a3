"""LoRA complexity norm thresholds measured on real inputs (Hu et al., arXiv 2406.03136).

"Computational Limits of Low-Rank Adaptation" shows that the gradient of LoRA on attention
admits almost-linear-time algorithms when ‖X·W_Qᵉᶠᶠ‖_∞ ≤ Γ and ‖X·W_K‖_∞ ≤ Γ with Γ = o(√ln L),
and that no sub-quadratic algorithm exists when they are Θ(√ln L) (under SETH). Here X is the
L×d input of the attention layer (after its norm), ‖·‖_∞ the largest absolute entry and
W_Qᵉᶠᶠ = W_Q* + s·B_Q·A_Q. Per checkpoint, layer, head, L and window this probe measures, with
the softmax scale 1/√d_head split evenly between Q and K (each scaled by d_head^(−1/4)):

* gamma_q = d_head^(−1/4)·max |X·W_Qᵉᶠᶠᵀ + b_Q| over the head's columns: the query projection's
  output as the model computes it (LoRA and DoRA included, bias included), taken in a hook;
* gamma_k likewise for the key projection (GQA: the key/value head the query head reads);
* gamma_lora = d_head^(−1/4)·max |s·X·Aᵀ·Bᵀ| over the head's columns: the LoRA term of W_Q alone
  (null for full fine-tunes and the base), and gamma_lora_k for W_K when it has one;
* gamma_q_rope, gamma_k_rope: the same after the rotary embedding, for rotary models;
* threshold = √ln L and ratio = max(gamma_q, gamma_k) / threshold.

The theorem is asymptotic in L; a ratio at one L is no verdict. What the theorem is about is
how the norms grow with L, so ``threshold_growth`` fits, per checkpoint and layer, the largest
gamma at each measured L against √ln L (least squares: gamma = a + b·√ln L).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from lab.probes.attention import forward_steps, least_squares
from lab.probes.registry import Probe, ProbeContext, Rows, register
from lab.probes.windows import (Window, attention_layers, check_window_options, head_shape, load_model,
                                load_tokenizer, make_windows, seq_len_field, window_rows, windows_field)


@dataclass(frozen=True)
class ThresholdOptions:
    """Options of the thresholds probe."""

    seq_len: tuple[int, ...] = seq_len_field()
    windows: int = windows_field()

    def __post_init__(self) -> None:
        object.__setattr__(self, "seq_len", check_window_options(self.seq_len, self.windows))


def head_max(x: np.ndarray, heads: int, d_head: int) -> np.ndarray:
    """max |entry| of each head's column block of an (L, heads·d_head) projection output."""
    return np.abs(np.asarray(x, np.float64).reshape(x.shape[0], heads, d_head)).max(axis=(0, 2))


def lora_term(linear, x):
    """Σ over active adapters of s·X·Aᵀ·Bᵀ for a PEFT LoRA/DoRA layer (float64 torch), the same with
    A = A_MPS for lab's MPS Adaptation layer, None for a plain one."""
    import torch

    if hasattr(linear, "mps_C1"):  # A_MPS[a, i1·d2 + i2] = Σ_c C1[a, i1, c]·C2[c, i2]
        C1, C2 = linear.mps_C1.to(torch.float64), linear.mps_C2.to(torch.float64)
        A = torch.einsum("aic,cj->aij", C1, C2).reshape(C1.shape[0], -1)
        return float(linear.scale) * (x.to(torch.float64) @ A.T) @ linear.mps_B.to(torch.float64).T
    if not hasattr(linear, "lora_A"):
        return None
    total = None
    for name in linear.active_adapters:
        if name not in linear.lora_A:
            continue
        A = linear.lora_A[name].weight.to(torch.float64)
        B = linear.lora_B[name].weight.to(torch.float64)
        term = float(linear.scaling[name]) * (x.to(torch.float64) @ A.T) @ B.T
        total = term if total is None else total + term
    return total


def measure(model, windows: list[Window], on_window: Callable[[int, Window], None] | None = None) -> list[dict[str, Any]]:
    """``thresholds`` rows (without checkpoint ids) for ``model`` on ``windows``."""
    import torch

    heads, kv, d_head = head_shape(model)
    group = heads // kv
    scale = d_head ** -0.25
    layers = attention_layers(model)
    rows: list[dict[str, Any]] = []
    seen: dict[str, Any] = {}
    current: list[Window] = []

    def projection(key: str):
        def fn(module, args, output):
            seen[key] = output[0].detach()
            seen[key + "_lora"] = lora_term(module, args[0][0].detach())
        return fn

    def pre(module, args, kwargs):
        seen["rope"] = kwargs.get("position_embeddings")

    def post(layer: int):
        def fn(module, args, output):
            w = current[0]
            q, k = seen.pop("q"), seen.pop("k")
            gq = head_max(q.to(torch.float64).numpy(), heads, d_head) * scale
            gk = head_max(k.to(torch.float64).numpy(), kv, d_head) * scale
            lq, lk = seen.pop("q_lora"), seen.pop("k_lora")
            glq = None if lq is None else head_max(lq.numpy(), heads, d_head) * scale
            glk = None if lk is None else head_max(lk.numpy(), kv, d_head) * scale
            rope = seen.pop("rope", None)
            gqr = gkr = None
            if rope is not None:
                # the model's own rotary function, applied to the hooked projections in float64
                apply = sys.modules[type(module).__module__].apply_rotary_pos_emb
                cos, sin = (t.to(torch.float64) for t in rope)
                qh = q.to(torch.float64).view(1, -1, heads, d_head).transpose(1, 2)
                kh = k.to(torch.float64).view(1, -1, kv, d_head).transpose(1, 2)
                qr, kr = apply(qh, kh, cos, sin)
                gqr = qr[0].abs().amax(dim=(1, 2)).numpy() * scale
                gkr = kr[0].abs().amax(dim=(1, 2)).numpy() * scale
            threshold = math.sqrt(math.log(w.seq_len))
            for h in range(heads):
                g = h // group
                rows.append({"layer": layer, "head": h, "kv_head": g, "seq_len": w.seq_len, "window": w.index,
                             "d_head": d_head, "gamma_q": float(gq[h]), "gamma_k": float(gk[g]),
                             "gamma_lora": None if glq is None else float(glq[h]),
                             "gamma_lora_k": None if glk is None else float(glk[g]),
                             "gamma_q_rope": None if gqr is None else float(gqr[h]),
                             "gamma_k_rope": None if gkr is None else float(gkr[g]),
                             "threshold": threshold, "ratio": max(float(gq[h]), float(gk[g])) / threshold})
        return fn

    handles = []
    for a in layers:
        handles += [a.q.register_forward_hook(projection("q")), a.k.register_forward_hook(projection("k")),
                    a.module.register_forward_pre_hook(pre, with_kwargs=True),
                    a.module.register_forward_hook(post(a.layer))]
    try:
        with torch.no_grad():
            for i, w in enumerate(windows):
                current[:] = [w]
                model(input_ids=torch.tensor([w.ids], dtype=torch.long))
                if on_window is not None:
                    on_window(i, w)
    finally:
        for h in handles:
            h.remove()
    return rows


def growth_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per layer: the largest max(gamma_q, gamma_k) at each L, fitted as a + b·√ln L."""
    peak: dict[int, dict[int, float]] = {}
    for r in rows:
        at = peak.setdefault(r["layer"], {})
        at[r["seq_len"]] = max(at.get(r["seq_len"], 0.0), r["gamma_q"], r["gamma_k"])
    out = []
    for layer, at in peak.items():
        lengths = sorted(at)
        fit = least_squares(np.sqrt(np.log(lengths)), np.array([at[L] for L in lengths]))
        out.append({"layer": layer, "lengths": len(lengths), "min_seq_len": lengths[0], "max_seq_len": lengths[-1],
                    "gamma_min_len": at[lengths[0]], "gamma_max_len": at[lengths[-1]],
                    "slope": fit.slope, "intercept": fit.intercept, "r2": fit.r2})
    return out


def _run(subject, options: ThresholdOptions, ctx: ProbeContext) -> Rows:
    tok = load_tokenizer(subject)
    windows = make_windows(tok, subject.texts(), options.seq_len, options.windows, subject.corpus_name)
    rows = measure(load_model(subject), windows, forward_steps(ctx, f"{subject.checkpoint} thresholds", windows))
    return {"windows": window_rows(tok, windows, "thresholds"), "thresholds": rows, "threshold_growth": growth_rows(rows)}


register(Probe(
    name="thresholds",
    tables=("windows", "thresholds", "threshold_growth"),
    run=_run,
    scope="model",
    options=ThresholdOptions,
    default=False,
    description="Hu et al.'s LoRA norm thresholds: max |X·W_Q| and |X·W_K| per head against √ln L on fixed token "
                "windows (needs a tokenizer, and --base for adapters; runs the models on text; asymptotic, no verdict)",
))
