"""LoRA complexity norm thresholds measured on real inputs, in both scales the theorem can be read in.

Hu et al., "Computational Limits of Low-Rank Adaptation" (arXiv 2406.03136): LoRA's gradient on
attention admits almost-linear-time algorithms when ‖X·W_Qᵉᶠᶠ‖_∞ and ‖X·W_K‖_∞ are o(√ln L), and no
sub-quadratic one at Θ(√ln L) under SETH. X is the L×d input of the attention layer (after its
norm), ‖·‖_∞ the largest absolute entry, W_Qᵉᶠᶠ = W_Q* + s·B_Q·A_Q. Hu et al. write softmax(Q·Kᵀ·β)
with β = 1; the bound they borrow is Alman & Song's (arXiv 2302.13214), whose attention is
exp(Q·Kᵀ/d) with every entry of Q and K in [−B, B], B = o(√ln n) or Θ(√ln n). A head that computes
q·kᵀ/√d_head is Alman–Song's form with Q' = d_head^(+1/4)·q and Hu's literal β = 1 form with
d_head^(−1/4)·q: the two scales differ by √d_head. Per checkpoint, layer, head, L and window:

* gamma_q = d_head^(−1/4)·max |X·W_Qᵉᶠᶠᵀ + b_Q| over the head's columns (Hu's literal β = 1 form):
  the query projection's output as the model computes it (LoRA, DoRA and bias included), hooked. Where
  the model normalises q before the softmax (q_norm: Qwen3 and Gemma 3 per head, OLMo 2 over the whole
  projection), the norm's output: the entries the softmax sees. Where the model's logit scale is not
  1/√d_head (Gemma's query_pre_attn_scalar^(−1/2), the module's ``scaling``), √scaling replaces
  d_head^(−1/4) and √(scaling·d_head) replaces d_head^(+1/4) below;
  gamma_q_as = d_head^(+1/4)·max |·| the same maximum in Alman–Song's scale (= √d_head·gamma_q);
* gamma_k, gamma_k_as likewise for the key projection (GQA: the key/value head the query head reads);
* gamma_lora (gamma_lora_k) = d_head^(−1/4)·max |s·X·Aᵀ·Bᵀ|: the LoRA term of W_Q (W_K) alone;
* gamma_q_rope, gamma_k_rope: gamma_q, gamma_k after the rotary embedding, for rotary models;
* threshold = √ln L, ratio = max(gamma_q, gamma_k)/√ln L and ratio_as = max(gamma_q_as, gamma_k_as)/√ln L;
* logit_max = max over attended pairs (i, j) (j ≤ i for a causal model; i − j < w in a sliding window of
  w) of |q_i·k_j|/√d_head (the model's scale; Gemma 2's soft-cap c·tanh(·/c) after it), with q, k
  after the norms and rotary embedding where the model applies them: the split-free quantity, read against
  ln_L = ln L (Alman–Song's entries bounded by B give logits bounded by d·B²/d = B² = o(ln n));
* the extreme-value control: the largest of n Gaussian entries of spread σ is σ·√(2 ln n) to leading
  order, whatever the regime, so a maximum growing with L says nothing by itself. evt_q =
  σ_q·√(2 ln(L·d_head)) with σ_q the standard deviation of the L·d_head entries gamma_q is the
  maximum of (same scale as gamma_q), evt_k likewise, and evt_ratio_q = gamma_q/evt_q,
  evt_ratio_k = gamma_k/evt_k (scale-free: the same in both conventions).

The theorem is asymptotic in L: a value at one L is no verdict. ``threshold_growth`` fits, per
checkpoint and layer, the largest gamma at each L against √ln L beside the same fit to the largest
control, and the largest logit_max against ln L; R² is NaN below three lengths, where a line through
two points fits by construction.

    >>> gamma_q_as = d_head ** 0.5 * gamma_q   # the two conventions, per row
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from lab.probes.attention import least_squares
from lab.probes.forward import forward_steps, run_windows
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


def head_std(x: np.ndarray, heads: int, d_head: int) -> np.ndarray:
    """Standard deviation (ddof 0) of the L·d_head entries of each head's column block."""
    return np.asarray(x, np.float64).reshape(x.shape[0], heads, d_head).std(axis=(0, 2))


def extreme_value_scale(n: int) -> float:
    """√(2 ln n): the leading-order growth of the largest of n Gaussian entries, in units of their σ."""
    return math.sqrt(2.0 * math.log(n))


def attended(L: int, causal: bool, window: int | None = None) -> np.ndarray:
    """(L, L) bool: query i attends to key j. Causal: j ≤ i; a sliding window of w (Mistral, Gemma): also
    i − j < w, as transformers' masks have it (``kv_idx > q_idx − sliding_window``)."""
    i, j = np.arange(L)[:, None], np.arange(L)[None, :]
    mask = j <= i if causal else np.ones((L, L), bool)
    if window is not None:
        mask &= (i - j < window) if causal else (np.abs(i - j) < window)
    return mask


def head_logits(q: np.ndarray, k: np.ndarray, scaling: float, softcap: float | None = None) -> np.ndarray:
    """One head's pre-softmax logits as the model computes them: scaling·q·kᵀ (scaling = 1/√d_head, or
    the model's own, Gemma's query_pre_attn_scalar^(−1/2)), then softcap·tanh(·/softcap) where the model caps
    its logits (Gemma 2), for q (L, d) and k (L, d)."""
    logits = (q @ k.T) * scaling
    if softcap is not None:
        logits = softcap * np.tanh(logits / softcap)
    return logits


def logit_max(q: np.ndarray, k: np.ndarray, causal: bool, scaling: float | None = None, softcap: float | None = None,
              window: int | None = None) -> np.ndarray:
    """Per query head: max over attended pairs (i, j) of |logit_ij| (:func:`head_logits`, :func:`attended`), for q
    of shape (heads, L, d) and k of shape (kv heads, L, d) (GQA: head h reads kv head h // (heads / kv));
    scaling defaults to 1/√d. One L×L block at a time, so memory is one head's logits."""
    heads, L, d = q.shape
    group = heads // k.shape[0]
    scaling = d ** -0.5 if scaling is None else scaling
    mask = attended(L, causal, window)
    out = np.empty(heads)
    for h in range(heads):
        out[h] = np.abs(head_logits(q[h], k[h // group], scaling, softcap))[mask].max()
    return out


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
    layers = attention_layers(model)
    rows: list[dict[str, Any]] = []
    seen: dict[str, Any] = {}
    current: list[Window] = []  # the window being run: run_windows' list, bound by install

    def projection(key: str):
        def fn(module, args, output):
            seen[key] = output[0].detach()
            seen[key + "_lora"] = lora_term(module, args[0][0].detach())
        return fn

    def normed(key: str):  # q_norm/k_norm (Qwen3, Gemma 3, OLMo 2): the entries softmax sees are the norm's output
        def fn(module, args, output):
            raw = seen[key]  # (L, heads·d): the projection's output, which the norm received reshaped
            out = output[0].detach()
            if out.dim() == 3 and not torch.equal(args[0][0].reshape(raw.shape[0], -1), raw):
                out = out.transpose(0, 1)  # (heads, L, d): normed after the heads were moved first (Gemma 3)
            seen[key] = out.reshape(raw.shape[0], -1)
        return fn

    def pre(module, args, kwargs):
        seen["rope"] = kwargs.get("position_embeddings")

    def post(layer: int, causal: bool):
        def fn(module, args, output):
            w = current[0]
            q, k = seen.pop("q").to(torch.float64), seen.pop("k").to(torch.float64)
            L = q.shape[0]
            # the model's own logit scale (1/√d_head, or Gemma's query_pre_attn_scalar^(−1/2)) split evenly
            # between q and k: Hu's β = 1 form; Alman–Song's exp(Q·Kᵀ/d_head) puts √d_head more on each side
            scaling = float(getattr(module, "scaling", None) or d_head ** -0.5)
            hu, alman_song = math.sqrt(scaling), math.sqrt(scaling * d_head)
            mq, mk = head_max(q.numpy(), heads, d_head), head_max(k.numpy(), kv, d_head)
            # σ of the same entries, in the same scale as gamma: the Gaussian maximum they would reach
            eq = head_std(q.numpy(), heads, d_head) * hu * extreme_value_scale(L * d_head)
            ek = head_std(k.numpy(), kv, d_head) * hu * extreme_value_scale(L * d_head)
            lq, lk = seen.pop("q_lora"), seen.pop("k_lora")
            glq = None if lq is None else head_max(lq.numpy(), heads, d_head) * hu
            glk = None if lk is None else head_max(lk.numpy(), kv, d_head) * hu
            qh = q.view(L, heads, d_head).transpose(0, 1)  # (heads, L, d)
            kh = k.view(L, kv, d_head).transpose(0, 1)
            rope = seen.pop("rope", None)
            gqr = gkr = None
            if rope is not None:
                # the model's own rotary function, applied to the hooked projections in float64
                apply = sys.modules[type(module).__module__].apply_rotary_pos_emb
                cos, sin = (t.to(torch.float64) for t in rope)
                qr, kr = apply(qh[None], kh[None], cos, sin)
                qh, kh = qr[0], kr[0]
                gqr = qh.abs().amax(dim=(1, 2)).numpy() * hu
                gkr = kh.abs().amax(dim=(1, 2)).numpy() * hu
            logits = logit_max(qh.numpy(), kh.numpy(), causal, scaling, getattr(module, "attn_logit_softcapping", None),
                               getattr(module, "sliding_window", None))
            threshold, ln_l = math.sqrt(math.log(w.seq_len)), math.log(w.seq_len)
            for h in range(heads):
                g = h // group
                gq, gk = float(mq[h]) * hu, float(mk[g]) * hu
                rows.append({"layer": layer, "head": h, "kv_head": g, "seq_len": w.seq_len, "window": w.index,
                             "d_head": d_head, "gamma_q": gq, "gamma_k": gk,
                             "gamma_q_as": float(mq[h]) * alman_song, "gamma_k_as": float(mk[g]) * alman_song,
                             "gamma_lora": None if glq is None else float(glq[h]),
                             "gamma_lora_k": None if glk is None else float(glk[g]),
                             "gamma_q_rope": None if gqr is None else float(gqr[h]),
                             "gamma_k_rope": None if gkr is None else float(gkr[g]),
                             "threshold": threshold, "ratio": max(gq, gk) / threshold,
                             "ratio_as": max(float(mq[h]), float(mk[g])) * alman_song / threshold,
                             "logit_max": float(logits[h]), "ln_L": ln_l,
                             "evt_q": float(eq[h]), "evt_k": float(ek[g]),
                             "evt_ratio_q": gq / float(eq[h]) if eq[h] > 0 else float("nan"),
                             "evt_ratio_k": gk / float(ek[g]) if ek[g] > 0 else float("nan")})
        return fn

    def install(running: list[Window]) -> list:
        nonlocal current
        current = running
        handles = []
        for a in layers:
            for key in ("q", "k"):
                norm = getattr(a.module, f"{key}_norm", None)
                if norm is not None:
                    handles.append(norm.register_forward_hook(normed(key)))
            handles += [a.q.register_forward_hook(projection("q")), a.k.register_forward_hook(projection("k")),
                        a.module.register_forward_pre_hook(pre, with_kwargs=True),
                        a.module.register_forward_hook(post(a.layer, bool(getattr(a.module, "is_causal", False))))]
        return handles

    run_windows(model, windows, install, on_window)
    return rows


MIN_FIT_LENGTHS = 3  # a line through two points has R² = 1 by construction


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(slope, intercept, R²) of y = a + b·x; R² NaN below MIN_FIT_LENGTHS points."""
    fit = least_squares(x, y)
    return fit.slope, fit.intercept, fit.r2 if len(x) >= MIN_FIT_LENGTHS else float("nan")


def growth_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per layer: the largest max(gamma_q, gamma_k) at each L fitted as a + b·√ln L, beside the same fit
    to the largest extreme-value control max(evt_q, evt_k), and the largest logit_max fitted against ln L."""
    peak: dict[int, dict[int, list[float]]] = {}
    for r in rows:
        at = peak.setdefault(r["layer"], {}).setdefault(r["seq_len"], [0.0, 0.0, 0.0])
        at[0] = max(at[0], r["gamma_q"], r["gamma_k"])
        at[1] = max(at[1], r["evt_q"], r["evt_k"])
        at[2] = max(at[2], r["logit_max"])
    out = []
    for layer, at in peak.items():
        lengths = sorted(at)
        gamma, evt, logit = (np.array([at[L][i] for L in lengths]) for i in range(3))
        x = np.sqrt(np.log(lengths))
        slope, intercept, r2 = _fit(x, gamma)
        evt_slope, evt_intercept, evt_r2 = _fit(x, evt)
        logit_slope, logit_intercept, logit_r2 = _fit(np.log(lengths), logit)
        out.append({"layer": layer, "lengths": len(lengths), "min_seq_len": lengths[0], "max_seq_len": lengths[-1],
                    "gamma_min_len": float(gamma[0]), "gamma_max_len": float(gamma[-1]),
                    "slope": slope, "intercept": intercept, "r2": r2,
                    "evt_min_len": float(evt[0]), "evt_max_len": float(evt[-1]),
                    "evt_slope": evt_slope, "evt_intercept": evt_intercept, "evt_r2": evt_r2,
                    "logit_min_len": float(logit[0]), "logit_max_len": float(logit[-1]),
                    "logit_slope": logit_slope, "logit_intercept": logit_intercept, "logit_r2": logit_r2})
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
    description="Hu et al.'s LoRA norm thresholds: max |X·W_Q| and |X·W_K| per head in Hu's and Alman–Song's scales, "
                "the largest logit |q·k|/√d_head against ln L and an extreme-value control, on fixed token windows "
                "(needs a tokenizer, and --base for adapters; runs the models on text; asymptotic, no verdict)",
))
