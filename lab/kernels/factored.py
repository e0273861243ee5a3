"""Linear algebra of a factored update M = s·B·A (B rows×r, A r×cols) without forming M.

Everything here costs O(r²·(rows + cols)) time and O(r·(rows + cols)) memory, against
O(rows·cols) (and more) for the multiplied-out matrix:

* singular values: B = Q_B R_B, Aᵀ = Q_A R_A (thin QR), so M = Q_B (s R_B R_Aᵀ) Q_Aᵀ and the
  singular values of M are those of the small core s·R_B·R_Aᵀ; its singular vectors, mapped
  through Q_B and Q_A, are M's singular vectors;
* "row roots": M·Mᵀ = s² B (A Aᵀ) Bᵀ = R Rᵀ with R = s·B·L for any L with L Lᵀ = A Aᵀ. At a
  cut inside the row sites the left block's reduced matrix is a partial trace of M·Mᵀ alone,
  so M reshaped at that cut has the singular values of R (rows×r) reshaped at the same cut;
  the mirror, C = s·Kᵀ·A with K Kᵀ = Bᵀ B (Cᵀ C = Mᵀ M), serves cuts inside the column sites.
"""

from __future__ import annotations

import numpy as np

from lab.deltas import Delta, Factors, Kron

__all__ = ["Factors", "as_matrix_or_factors", "core", "core_singular_values", "top_singular_vectors", "row_root", "col_root"]


def as_matrix_or_factors(x) -> np.ndarray | Factors | Kron:
    """A float64 2-D array, ``Factors`` or ``Kron`` (as it is), from an array, a Delta, a (B, A[, scale])
    tuple, Factors or Kron."""
    if isinstance(x, (Factors, Kron)):
        return x
    if isinstance(x, Delta):
        return as_matrix_or_factors(x.matrix)
    if isinstance(x, tuple):
        return Factors(*x)
    m = np.asarray(x)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {m.shape}")
    return m


def core(f: Factors) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Q_B, C, Q_A) with scale·B·A = Q_B · C · Q_Aᵀ, Q's with orthonormal columns, C small."""
    q_b, r_b = np.linalg.qr(f.B)  # thin: rows×min(rows, r), min(rows, r)×r
    q_a, r_a = np.linalg.qr(f.A.T)
    return q_b, f.scale * (r_b @ r_a.T), q_a


def core_singular_values(f: Factors) -> np.ndarray:
    """The singular values of scale·B·A in descending order (at most min(r, rows, cols) of them).

    The core of :func:`core` without its Q factors (a tall QR's Q costs several times its R; ``mode="r"`` runs the
    same LAPACK factorisation, so the R's, and the values, are those of :func:`core`)."""
    r_b = np.linalg.qr(f.B, mode="r")
    r_a = np.linalg.qr(f.A.T, mode="r")
    return np.linalg.svd(f.scale * (r_b @ r_a.T), compute_uv=False)


def top_singular_vectors(f: Factors, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U_k, σ_k, V_k): the k leading singular triplets of scale·B·A (U rows×k, V cols×k)."""
    q_b, c, q_a = core(f)
    u, s, vt = np.linalg.svd(c)
    return q_b @ u[:, :k], s[:k], q_a @ vt[:k].T


def _psd_root(gram: np.ndarray) -> np.ndarray:
    """L with L·Lᵀ = gram (r×r', r' = positive eigenvalues only): gram may be singular."""
    w, v = np.linalg.eigh(gram)
    keep = w > 0.0  # clipped: the negatives are rounding of zeros and contribute nothing
    return v[:, keep] * np.sqrt(w[keep])


def row_root(f: Factors) -> np.ndarray:
    """R (rows×r') with R·Rᵀ = M·Mᵀ for M = scale·B·A: R = scale·B·L, L·Lᵀ = A·Aᵀ."""
    return f.scale * (f.B @ _psd_root(f.A @ f.A.T))


def col_root(f: Factors) -> np.ndarray:
    """C (r'×cols) with Cᵀ·C = Mᵀ·M for M = scale·B·A: C = scale·Kᵀ·A, K·Kᵀ = Bᵀ·B."""
    return f.scale * (_psd_root(f.B.T @ f.B).T @ f.A)
