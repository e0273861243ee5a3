"""The arithmetic of a squeeze: SVDs of one module's update and the rank to keep.

* From factors s·B·A (LoRA, or MPS's B·A_MPS): thin QR of B and of Aᵀ and the SVD of the r × r
  core s·R_B·R_Aᵀ give ΔW = U·Σ·Vᵀ exactly in O(r²·(m + n)) (:func:`lab.kernels.factored.core`),
  never an m × n matrix.
* From a dense ΔW (a full fine-tune): the randomized range finder with power iterations (Halko,
  Martinsson & Tropp 2011, Algorithms 4.4 and 5.1), seeded: Y = (ΔW·ΔWᵀ)^q·ΔW·Ω with a QR after
  every product, then the SVD of the small Qᵀ·ΔW.

The rank-k truncation keeps U_k·Σ_k·V_kᵀ, the best rank-k approximation (Eckart–Young), written as
B = U_k·√Σ_k, A = √Σ_k·V_kᵀ with scale 1.
"""

from __future__ import annotations

import numpy as np

from lab.deltas import Factors
from lab.kernels.factored import core


def factored_svd(f: Factors) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, σ, Vᵀ) of s·B·A (U m × q, Vᵀ q × n, q = min(r, m, n)) from QR of both factors and a small SVD."""
    q_b, c, q_a = core(f)
    u, s, vt = np.linalg.svd(c, full_matrices=False)
    return q_b @ u, s, vt @ q_a.T


def randomized_svd(M: np.ndarray, k: int, *, oversample: int = 10, power_iters: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U_k, σ_k, V_kᵀ): k leading singular triplets of ``M`` by a seeded randomized SVD.

    Ω is a Gaussian (n × (k + oversample)) from ``numpy.random.default_rng(seed)``; each of the
    ``power_iters`` passes multiplies by Mᵀ then M with a QR in between (so small singular values
    are not lost to rounding). Same seed, same result.
    """
    m, n = M.shape
    ell = min(k + oversample, m, n)
    omega = np.random.default_rng(seed).standard_normal((n, ell))
    Q, _ = np.linalg.qr(M @ omega)
    for _ in range(power_iters):
        Z, _ = np.linalg.qr(M.T @ Q)
        Q, _ = np.linalg.qr(M @ Z)
    u, s, vt = np.linalg.svd(Q.T @ M, full_matrices=False)
    return (Q @ u)[:, :k], s[:k], vt[:k]


def energy_rank(sigma: np.ndarray, energy: float) -> int:
    """The smallest k ≥ 1 with Σ_{i≤k} σ_i² ≥ energy·Σ σ_i² (σ descending)."""
    sq = np.asarray(sigma, np.float64) ** 2
    total = sq.sum()
    if total == 0.0:
        return 1
    kept = np.cumsum(sq) / total
    return int(min(np.searchsorted(kept, energy, side="left") + 1, sq.size))


def kept_energy(sigma: np.ndarray, k: int) -> float:
    """Σ_{i≤k} σ_i² / Σ σ_i² (1 for a zero update)."""
    sq = np.asarray(sigma, np.float64) ** 2
    total = sq.sum()
    return float(sq[:k].sum() / total) if total > 0 else 1.0


def split(U: np.ndarray, sigma: np.ndarray, Vt: np.ndarray, k: int) -> Factors:
    """U_k·Σ_k·V_kᵀ as factors B = U_k·√Σ_k (m × k), A = √Σ_k·V_kᵀ (k × n), scale 1; ranks beyond
    the available singular values stay zero."""
    k_eff = min(k, sigma.size)
    root = np.sqrt(sigma[:k_eff])
    B = np.zeros((U.shape[0], k))
    A = np.zeros((k, Vt.shape[1]))
    B[:, :k_eff] = U[:, :k_eff] * root
    A[:k_eff] = root[:, None] * Vt[:k_eff]
    return Factors(B, A, 1.0)
