"""Norms of updates held in any representation, without multiplying factors out.

* :func:`update_norm`: ‖ΔW‖_F of a :class:`~lab.deltas.Delta`, dense, factored (r×r Grams) or
  streamed (block by block, :func:`lab.kernels.blocked.fro_norm_blocked`);
* :func:`difference_norms`: ‖Σ_j L_j·R_j‖_F and ‖Σ_j L_j·R_j‖_2 of a sum of factor pairs (a merge's
  error against the exact sum, a permuted LoRA against the original) from a small QR core.
"""

from __future__ import annotations

import numpy as np

from lab.deltas import Delta
from lab.kernels.blocked import fro_norm_blocked


def update_norm(delta: Delta) -> float:
    """‖ΔW‖_F of any representation: dense, factored (r×r Grams) or streamed (block by block).

    For a streamed ΔW this is the pass that finds NaN/inf: :class:`~lab.errors.NonFiniteError`.
    """
    if delta.streamed:
        return fro_norm_blocked(delta.matrix)
    return delta.fro_norm()


def difference_norms(left: list[np.ndarray], right: list[np.ndarray]) -> tuple[float, float]:
    """‖Σ_j L_j·R_j‖_F and ‖Σ_j L_j·R_j‖_2 for factor pairs L_j (m×r_j), R_j (r_j×n), never multiplied out.

    With C = [L_1 … L_J] and D = [R_1; …; R_J], Σ_j L_j R_j = C·D. Thin QR of C = Q_C R_C and of
    Dᵀ = Q_D R_D gives C·D = Q_C (R_C R_Dᵀ) Q_Dᵀ, so both norms are those of the small core
    R_C R_Dᵀ. Why QR rather than the Gram trace ‖CD‖² = tr((CᵀC)(DDᵀ)): for a difference that is
    zero in exact arithmetic the trace cancels terms of size ‖C‖²‖D‖² and keeps only √ε of the
    digits, while Householder QR is backward stable and resolves the difference at ε.
    """
    C = np.concatenate(left, axis=1)
    D = np.concatenate(right, axis=0)
    if C.shape[1] == 0:
        return 0.0, 0.0
    Rc = np.linalg.qr(C, mode="r")  # R alone: forming a tall QR's Q costs several times R
    Rd = np.linalg.qr(D.T, mode="r")
    core = Rc @ Rd.T
    sigma = np.linalg.svd(core, compute_uv=False)
    return float(np.sqrt((sigma ** 2).sum())), float(sigma[0]) if sigma.size else 0.0
