"""LoHa (Hyeon-Woo et al., FedPara, 2022): a Hadamard product of two low-rank matrices, read as factors
of rank r1·r2 through the Khatri–Rao (row-wise Kronecker) product, never multiplied out.

PEFT 0.21's ``LoHaLayer.get_delta_weight`` for a Linear layer (peft/tuners/loha/layer.py,
``HadaWeight``) is

    ΔW = ((w1a · w1b) ⊙ (w2a · w2b)) · scale,   scale = alpha / r

with w1a, w2a (out × r) and w1b, w2b (r × in); r and alpha are the module's (``rank_pattern``,
``alpha_pattern`` matched on its name by PEFT's ``get_pattern_key``, else ``r``/``alpha``). PEFT
multiplies by ``torch.tensor(scale)``, a float32 number; lab keeps alpha/r exact in float64 (the
difference is below 1e-7 relative).

The Hadamard product of rank-r1 and rank-r2 matrices has rank ≤ r1·r2, and it factors exactly:
with B[i, (p, q)] = w1a[i, p]·w2a[i, q] (out × r1·r2) and A[(p, q), j] = w1b[p, j]·w2b[q, j]
(r1·r2 × in), (B·A)[i, j] = Σ_pq w1a[i,p] w1b[p,j] · w2a[i,q] w2b[q,j] = (w1a·w1b)[i, j]·(w2a·w2b)[i, j].
So every factored probe applies, with ``rank_bound`` r1·r2. Where r1·r2 ≥ min(out, in) the factors
would be no smaller than ΔW and the bound no tighter than the shape's: ΔW is then returned dense,
computed from the four matrices (still without PEFT).

Only Linear layers (2-D w's, no ``hada_t1``/``hada_t2``): a convolution's CP-decomposed LoHa goes
through the general path.
"""

from __future__ import annotations

import numpy as np

from lab.checkpoints.loader import TensorLoader
from lab.checkpoints.peft_types import common
from lab.checkpoints.records import ModuleRead
from lab.deltas import Factors

NAMES = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")


def khatri_rao(w1a: np.ndarray, w1b: np.ndarray, w2a: np.ndarray, w2b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, A) with B·A = (w1a·w1b) ⊙ (w2a·w2b): B the row-wise Kronecker product of w1a and w2a
    (out × r1·r2), A the column-wise one of w1b and w2b (r1·r2 × in)."""
    out, inp = w1a.shape[0], w1b.shape[1]
    B = (w1a[:, :, None] * w2a[:, None, :]).reshape(out, -1)
    A = (w1b[:, None, :] * w2b[None, :, :]).reshape(-1, inp)
    return B, A


def read(spec: ModuleRead, loader: TensorLoader, stream_bytes: int | None = common.STREAM_BYTES):
    """(Factors of rank r1·r2 or, when that is not below min(out, in), dense ΔW; the base weight; note)."""
    found = common.tensors(spec)
    if "hada_t1" in found or "hada_t2" in found or spec.conv1d:
        return None  # a convolution's CP form (PEFT has no Conv1D LoHa): the general path
    infos = common.require(spec, found, *NAMES)
    w1a, w1b, w2a, w2b = (common.get(spec, loader, i) for i in infos)
    rows, cols = spec.shape
    r1, r2 = w1a.shape[-1], w2a.shape[-1]
    for info, w, want in zip(infos, (w1a, w1b, w2a, w2b), ((rows, r1), (r1, cols), (rows, r2), (r2, cols))):
        common.check_shape(spec, info, w, want)
    scale = _alpha(spec) / r1
    if r1 * r2 < min(rows, cols):
        B, A = khatri_rao(w1a, w1b, w2a, w2b)
        matrix = common.checked(spec, Factors(B, A, scale))
        note = f"loha: Khatri–Rao factors, rank ≤ r1·r2 = {r1 * r2}"
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            matrix = common.checked_dense(spec, ((w1a @ w1b) * (w2a @ w2b)) * scale)
        note = f"loha: dense ΔW (r1·r2 = {r1 * r2} ≥ min(rows, cols))"
    return matrix, common.base_weight(spec, loader, stream_bytes if isinstance(matrix, Factors) else None), note


def _alpha(spec: ModuleRead) -> float:
    """The module's alpha as PEFT's LoHa model picks it: ``alpha_pattern`` matched on the module's name, else ``alpha``."""
    from peft.utils.other import get_pattern_key

    cfg = common.config(spec)
    pattern = cfg.alpha_pattern or {}
    key = get_pattern_key(pattern.keys(), spec.peft.module)
    return float(pattern.get(key, cfg.alpha))


def rank_bound(spec: ModuleRead, rows: int) -> int | None:
    """r1·r2 from the stored shapes when :func:`read` gives factors (else None: dense, min(rows, cols)),
    for planning the run's controls."""
    shapes = {name: tuple(info.shape) for name, info in common.tensors(spec).items()}
    if "hada_t1" in shapes or spec.conv1d or any(len(shapes.get(n, ())) != 2 for n in NAMES):
        return None
    bound = shapes["hada_w1_a"][1] * shapes["hada_w2_a"][1]
    return bound if bound < min(spec.shape) else None
