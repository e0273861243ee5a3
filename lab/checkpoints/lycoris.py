"""The updates of kohya / LyCORIS modules as lab's structured matrices, from their stored tensors.

Every update is read as a matrix of shape (out) × (in·kh·kw): a convolution's 4-D update
ΔW[o, i, h, w] flattened row-major over (i, h, w), the layout of ``weight.reshape(out, -1)``. The
factors are never multiplied out where a structure holds (ΔW stays :class:`~lab.deltas.Factors` or
:class:`~lab.deltas.Kron`, so the probes' exact fast paths apply). The formulas are those of
LyCORIS's modules (``lycoris/modules/locon.py``, ``loha.py``, ``lokr.py``, ``full.py``) and of the
loaders that apply these files (sd-scripts, ComfyUI), for a module of rank r and stored ``alpha``:

* LoRA / LoCon: ΔW = (alpha/r)·up·down, up (out × r [× 1 × 1]), down (r × in [× kh × kw]);
  LoCon's Tucker form ΔW[o,i,h,w] = (alpha/r)·Σ_nm mid[n,m,h,w]·up[o,n]·down[m,i] is still
  up·A with A[n, (i,h,w)] = Σ_m mid[n,m,h,w]·down[m,i] (rank ≤ r).
* LoHa: ΔW = (alpha/r)·(w1a·w1b) ⊙ (w2a·w2b) with r = w1b's rows, read as Khatri–Rao factors of
  rank ≤ r1·r2 (:func:`lab.checkpoints.peft_types.loha.khatri_rao`); Tucker (``hada_t1``/``hada_t2``,
  w·a (r × out), w·b (r × in)): each Hadamard operand is w·aᵀ·(t ×₂ w·bᵀ), rank ≤ r, so the same factors.
* LoKr: ΔW = (alpha/r)·kron(W1, W2), W1 = ``lokr_w1`` or ``lokr_w1_a``·``lokr_w1_b``, W2 = ``lokr_w2``
  (a conv's c × d × kh × kw read as c × (d·kh·kw)), ``lokr_w2_a``·``lokr_w2_b``, or Tucker
  w2aᵀ·(t2 ×₂ w2bᵀ); r = the rows of ``lokr_w1_b``, else of ``lokr_w2_b``; with W1 and W2 both
  whole the scale is 1 (LyCORIS sets alpha = r then). kron(W1, W2 as c × (d·kh·kw)) is exactly the
  flattened 4-D kron LyCORIS builds.
* full / diff: ΔW = ``diff`` (scale 1).
* DoRA (``dora_scale``): W' = dora_scale·(W + ΔW)/‖W + ΔW‖ with the norm over the axes where
  ``dora_scale`` has size 1 (LyCORIS: per input channel, shape 1 × in [× 1 × 1]; a 1-D ``dora_scale``
  of out entries, PEFT's magnitude as diffusers converts it, per output row); the update is W' − W.
  LyCORIS adds float32's eps (1.2e-7) to the norm; lab does not (PEFT does not either).
"""

from __future__ import annotations

import numpy as np

from lab.checkpoints.peft_types.loha import khatri_rao
from lab.deltas import Factors, Kron


def locon(up: np.ndarray, down: np.ndarray, scale: float, mid: np.ndarray | None = None) -> Factors:
    """s·up·down as Factors (out × r, r × in·kh·kw); with LoCon's Tucker ``mid`` (r × r × kh × kw) folded into A."""
    B = up.reshape(up.shape[0], -1)
    if mid is None:
        return Factors(B, down.reshape(down.shape[0], -1), scale)
    down2 = down.reshape(down.shape[0], -1)  # r × in (a 1×1 convolution)
    A = np.einsum("nmhw,mi->nihw", mid, down2).reshape(mid.shape[0], -1)
    return Factors(B, A, scale)


def tucker_factors(t: np.ndarray, wa: np.ndarray, wb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, A) with B·A = LyCORIS's ``rebuild_tucker`` einsum("i j ..., i p, j r -> p r ...", t, wa, wb)
    flattened to p × (r·kh·kw): B = waᵀ, A[i, (r, h, w)] = Σ_j t[i, j, h, w]·wb[j, r]."""
    A = np.einsum("ijhw,jr->irhw", t, wb).reshape(t.shape[0], -1)
    return np.ascontiguousarray(wa.T), A


def loha(w1a, w1b, w2a, w2b, scale: float, t1=None, t2=None) -> Factors | np.ndarray:
    """s·(w1a·w1b) ⊙ (w2a·w2b) as Khatri–Rao Factors (rank ≤ r1·r2), or dense when r1·r2 ≥ min(out, cols)."""
    if t1 is not None:
        (B1, A1), (B2, A2) = tucker_factors(t1, w1a, w1b), tucker_factors(t2, w2a, w2b)
    else:
        B1, A1, B2, A2 = w1a, w1b.reshape(w1b.shape[0], -1), w2a, w2b.reshape(w2b.shape[0], -1)
    rows, cols = B1.shape[0], A1.shape[1]
    if B1.shape[1] * B2.shape[1] < min(rows, cols):
        return Factors(*khatri_rao(B1, A1, B2, A2), scale)
    with np.errstate(over="ignore", invalid="ignore"):
        return ((B1 @ A1) * (B2 @ A2)) * scale


def lokr(w1, w2, scale: float) -> Kron:
    """s·kron(W1, W2); each of W1, W2 a 2-D array or Factors (a conv's W2 already c × d·kh·kw)."""
    return Kron(w1, w2, scale)


def dora(W: np.ndarray, delta: np.ndarray, dora_scale: np.ndarray) -> np.ndarray:
    """W' − W with W' = dora_scale·(W + ΔW)/‖W + ΔW‖; W and ΔW in the module's stored shape (out, in[, kh, kw]).

    The norm runs over the axes where ``dora_scale`` (reshaped to W's rank) has size 1: a 1-D
    ``dora_scale`` of ``out`` entries normalises each output row, LyCORIS's 1 × in [× 1 × 1] each input channel."""
    V = W + delta
    m = dora_scale.reshape((-1,) + (1,) * (W.ndim - 1)) if dora_scale.ndim == 1 else dora_scale.reshape(
        dora_scale.shape + (1,) * (W.ndim - dora_scale.ndim))
    axes = tuple(i for i in range(W.ndim) if m.shape[i] == 1)
    norm = np.sqrt(np.sum(V * V, axis=axes, keepdims=True))
    return (m / norm) * V - W
