"""Singular subspaces: leading singular vectors, principal-angle overlaps, intruder directions.

* Overlap of two k-dimensional subspaces with orthonormal bases U₁, U₂: the cosines of the
  principal angles are the singular values of U₁ᵀU₂ (Björck & Golub 1973), so their mean square
  is ‖U₁ᵀU₂‖²_F / k: 1 for the same subspace, 0 for orthogonal ones, and k/n on average for
  random subspaces of Rⁿ (the baseline to read it against).
* Intruder directions (Shuttleworth, Andreas, Torralba & Sharma 2024, "LoRA vs Full
  Fine-tuning: An Illusion of Equivalence"): a left singular vector y_j among the top ones of the
  tuned matrix W + ΔW is an intruder when max_i |cos(y_j, x_i)| < ε over the left singular
  vectors x_i of the pre-trained W (the paper compares with all of them and reports ε-sweeps).
  All of W's vectors are a full eigendecomposition with vectors (2.5× the eigenvalues alone at
  2048²), but the maximum over all of them is usually decided by the leading few: for a unit y_j
  and orthonormal x_i, Σ_i cos² ≤ 1, so every x_i outside the leading m has
  |cos(y_j, x_i)| ≤ √(1 − Σ_{i≤m} cos²(y_j, x_i)). When the leading m's best cosine is at least
  that bound for every y_j, it is the maximum over all of W's vectors, exactly
  (:func:`certified_max_cosines`); only when it is not are all of W's vectors computed.
* W + ΔW for a factored ΔW = s·B·A (:func:`tuned_singular_vectors`): with W = U Σ Vᵀ known in full
  (its small side's complete basis, which the probes solve anyway below ``LANCZOS_FROM``), W + ΔW's
  small-side Gram in that basis is Σ² plus a symmetric term of rank ≤ 2r. For a tall W (n columns)
  and Ã = A·V, M̃ = s·(BᵀW)·V, K = s²·BᵀB, N = M̃ + K·Ã/2:

      Vᵀ (W + ΔW)ᵀ (W + ΔW) V = Σ² + Ãᵀ M̃ + M̃ᵀ Ã + Ãᵀ K Ã = Σ² + Ãᵀ N + Nᵀ Ã,

  an n×n eigenproblem whose product with a vector costs O(n·r) instead of O(n²), solved by Lanczos
  to machine precision (or densely when many vectors are wanted); its eigenvectors mapped through
  V are W + ΔW's small-side singular vectors, the other side is (W + ΔW)·v / σ without forming
  W + ΔW. Rounding: ε·‖W + ΔW‖², as for the Gram of W + ΔW formed directly.
"""

from __future__ import annotations

import numpy as np

from lab.errors import NonFiniteError
from lab.kernels import factored
from lab.kernels.factored import Factors
from lab.kernels.linalg import SAFE_MAGNITUDE, gram, leading_eigh, psd_eigh, rescaled
from lab.kernels.memo import pure


def top_singular_vectors(x: np.ndarray | Factors, k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, σ, V): the k leading singular triplets (all when k is None) with σ descending.

    Dense: eigenvectors of the smaller Gram matrix, the other side mapped through x and
    normalised; directions with σ = 0 are dropped, so fewer than k may come back. Factored: QR
    of both factors and an r×r SVD (exact, never multiplied out).
    """
    if isinstance(x, Factors):
        u, s, v = factored.top_singular_vectors(x, x.rank_bound if k is None else k)
        keep = s > 0.0
        return u[:, keep], s[keep], v[:, keep]
    x = np.asarray(x, dtype=np.float64)
    m, n = x.shape
    small = min(m, n)
    k = small if k is None else min(int(k), small)
    if k <= 0:
        return np.zeros((m, 0)), np.zeros(0), np.zeros((n, 0))
    wide = m <= n
    x, top = rescaled(x)  # vectors do not change with scale; Grams of entries near 1e±300 do not fit float64
    w, vecs = leading_eigh(gram(x), k)
    keep = w > 0.0
    sigma, near = top * np.sqrt(w[keep]), vecs[:, keep]
    far = (x.T @ near) if wide else (x @ near)
    far /= np.linalg.norm(far, axis=0)  # = σ up to rounding; normalising keeps the basis orthonormal
    return (near, sigma, far) if wide else (far, sigma, near)


def base_singular_vectors(w: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`top_singular_vectors` of a base weight W, solved once per W and k (:func:`lab.kernels.memo.pure`):
    the spectra and intruders probes of a unit share it, and a sweep's checkpoints read it from disk."""
    return pure(w, f"svd:{'all' if k is None else int(k)}", lambda: top_singular_vectors(w, k))


# The low-rank route solves W + ΔW's k leading directions by Lanczos when k ≤ n / LOW_RANK_LANCZOS_FRACTION
# (ARPACK on the structured operator: ~4 ms for 10 of 384, against ~17 ms for the dense Gram's eigh;
# for 100 of 384 Lanczos is slower than the dense eigh, so the structured Gram is formed and solved whole).
LOW_RANK_LANCZOS_FRACTION = 4


def tuned_singular_vectors(base: np.ndarray, delta_x, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, σ, V): the k leading singular triplets of W + ΔW (``base`` W, ``delta_x`` a dense array or
    Factors), σ descending, directions with σ = 0 dropped.

    A factored ΔW = s·B·A over a W whose full decomposition the probes solve anyway
    (:func:`leading_for_certificate` is None for k: W's small side is below ``LANCZOS_FROM``) and
    whose small side W spans in full: from W's decomposition and the factors (module notes), never
    forming W + ΔW; otherwise :func:`top_singular_vectors` of W + ΔW formed densely. Which route is a
    function of the shapes, of ΔW's kind and of W's rank and magnitude alone, so a sweep that reads W's
    decomposition from disk gets the same bits as one that solves it.

    Raises NonFiniteError when W + ΔW holds NaN or inf.
    """
    base = np.asarray(base, dtype=np.float64)
    if isinstance(delta_x, Factors):
        route = _low_rank_update(base, delta_x, k)
        if route is not None:
            return route
        delta_x = delta_x.to_dense()
    tuned = base + delta_x
    if not np.isfinite(tuned).all():
        raise NonFiniteError(f"W + ΔW ({base.shape[0]}x{base.shape[1]}) holds NaN or inf; its singular vectors are undefined")
    return top_singular_vectors(tuned, k)


def _moderate(*arrays: np.ndarray) -> bool:
    """Every array finite, with max |entry| inside SAFE_MAGNITUDE (or all zero)."""
    for a in arrays:
        # max |a| without an |a| temporary of a's size (as linalg.rescaled)
        top = max(float(np.max(a, initial=0.0)), -float(np.min(a, initial=0.0))) if a.size else 0.0
        if not np.isfinite(top) or (top != 0.0 and not SAFE_MAGNITUDE[0] <= top <= SAFE_MAGNITUDE[1]):
            return False
    return True


def _low_rank_update(base: np.ndarray, f: Factors, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`tuned_singular_vectors` through W's full decomposition, or None where that route does not apply."""
    m, n_cols = base.shape
    small = min(m, n_cols)
    k = min(int(k), small)
    if k <= 0 or f.shape != base.shape or leading_for_certificate(small, k) is not None:
        return None
    # magnitudes: the dense route rescales extreme entries; here W's and the factors' stay unscaled
    if not _moderate(base, f.B, f.A, np.array([f.scale])):
        return None
    if abs(f.scale) * float(np.abs(f.B).max(initial=0.0)) * float(np.abs(f.A).max(initial=0.0)) * f.B.shape[1] > SAFE_MAGNITUDE[1]:
        return None
    u_w, s_w, v_w = base_singular_vectors(base, None)
    wide = m <= n_cols  # as top_singular_vectors: the small side's basis is the one solved as eigenvectors
    near = u_w if wide else v_w
    if near.shape[1] < small:  # W is rank-deficient: its basis of the small side is not complete
        return None
    # X: W with its small side as columns; ΔX = s·Bx·Ax
    x, bx, ax = (base.T, f.A.T, f.B.T) if wide else (base, f.B, f.A)
    s = f.scale
    a_t = ax @ near  # r×n
    k_mat = (s * s) * (bx.T @ bx)
    n_mat = s * ((bx.T @ x) @ near) + 0.5 * (k_mat @ a_t)
    lam_w = s_w * s_w
    h = a_t.T @ n_mat  # the structured Gram formed: O(n²·r); solved whole, or the Lanczos answer's certificate
    h = h + h.T
    h[np.diag_indices(small)] += lam_w
    if not np.isfinite(h).all():
        return None
    found = _lanczos_certified(h, lam_w, a_t, n_mat, k) if k <= small // LOW_RANK_LANCZOS_FRACTION else None
    if found is not None:
        lam, z = found
    else:
        lam, z = psd_eigh(h)
        lam, z = lam[::-1][:k], z[:, ::-1][:, :k]
    if not np.isfinite(lam).all():
        return None
    keep = lam > 0.0
    sigma, near_t = np.sqrt(lam[keep]), near @ z[:, keep]
    far = x @ near_t + s * (bx @ (ax @ near_t))
    far /= np.linalg.norm(far, axis=0)  # = σ up to rounding; normalising keeps the basis orthonormal
    return (near_t, sigma, far) if wide else (far, sigma, near_t)


# A Lanczos answer is accepted when no eigenvalue it missed lies above λ_k + LANCZOS_MARGIN·λ₁ (rounding
# of the Gram is ~n·ε·λ₁): a single start vector finds one direction of a repeated eigenvalue only, and
# W + ΔW's structured Gram repeats every eigenvalue W repeats (an orthogonal or identity-like W)
LANCZOS_MARGIN = 1e-9


def _lanczos_certified(h: np.ndarray, lam_w: np.ndarray, a_t: np.ndarray, n_mat: np.ndarray,
                       k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(λ descending, eigenvectors) of the k largest eigenpairs of h = diag(lam_w) + a_tᵀ·n_mat + n_matᵀ·a_t by
    Lanczos on the O(n·r) product, or None when ARPACK does not converge or the answer is not certified
    the top k: with the found pairs deflated, t·I − (h − Z Λ Zᵀ) must be positive definite (a Cholesky
    factorisation, n³/3) at t = λ_k + LANCZOS_MARGIN·λ₁."""
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    small = h.shape[0]

    def product(z: np.ndarray) -> np.ndarray:
        z2 = z.reshape(small, -1)
        return lam_w[:, None] * z2 + a_t.T @ (n_mat @ z2) + n_mat.T @ (a_t @ z2)

    op = LinearOperator((small, small), matvec=lambda z: product(z).ravel(), matmat=product, dtype=np.float64)
    v0 = np.random.default_rng([small, k]).standard_normal(small)  # fixed: the same bits on every run and worker
    try:
        lam, z = eigsh(op, k=k, which="LA", tol=0.0, v0=v0)
    except ArpackNoConvergence:
        return None
    order = np.argsort(lam)[::-1]
    lam, z = lam[order], z[:, order]
    if not np.isfinite(lam).all() or lam[0] <= 0.0:
        return None
    rest = (z * lam) @ z.T - h  # −(h with the found pairs deflated)
    rest[np.diag_indices(small)] += lam[-1] + LANCZOS_MARGIN * lam[0]
    try:
        np.linalg.cholesky(rest)
    except np.linalg.LinAlgError:
        return None
    return lam, z


def subspace_overlap(u1: np.ndarray, u2: np.ndarray) -> float:
    """Mean squared cosine of the principal angles between span(u1) and span(u2) (orthonormal columns)."""
    k = min(u1.shape[1], u2.shape[1])
    if k == 0:
        return float("nan")
    return float(np.linalg.norm(u1.T @ u2) ** 2 / k)


def max_cosines(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """For each column y_j: max_i |cos(y_j, x_i)| over the columns x_i."""
    yn = y / np.linalg.norm(y, axis=0)
    xn = x / np.linalg.norm(x, axis=0)
    return np.abs(yn.T @ xn).max(axis=1)


CERTIFY_WITH = 64  # W's leading vectors tried first for the intruders' max-cosines (all of them when that cannot certify)


def leading_for_certificate(n: int, k: int) -> int | None:
    """How many of W's n leading directions to solve first (at least the k the overlaps need), or None
    for all of them at once: when a partial solve would not be cheaper than the full one
    (:func:`lab.kernels.linalg.leading_eigh` solves fully below LANCZOS_FROM or above n / LANCZOS_FRACTION)."""
    from lab.kernels.linalg import LANCZOS_FRACTION, LANCZOS_FROM

    lead = max(int(k), CERTIFY_WITH)
    return lead if n >= LANCZOS_FROM and lead <= n // LANCZOS_FRACTION else None


def certified_max_cosines(cos: np.ndarray) -> np.ndarray | None:
    """max_i |cos_ji| per row of ``cos`` (cosines of unit vectors y_j with orthonormal x_1 … x_m) when
    that is provably the maximum over any orthonormal set extending x_1 … x_m, else None."""
    best = np.abs(cos).max(axis=1, initial=0.0)
    rest = np.sqrt(np.clip(1.0 - (cos * cos).sum(axis=1), 0.0, None))
    return best if cos.shape[1] and bool((best >= rest).all()) else None


def max_cosines_over_all(leading: np.ndarray, complete: bool, every) -> np.ndarray:
    """max_i |cos(y_j, x_i)| over all of W's vectors x_i, per y_j: from ``leading`` (the cosines with W's
    leading vectors) when those are ``complete`` (every direction of W) or certify the maximum, else
    from ``every()`` (the cosines with all of W's vectors, computed only then)."""
    best = np.abs(leading).max(axis=1) if complete else certified_max_cosines(leading)
    return best if best is not None else np.abs(every()).max(axis=1)


# Shuttleworth et al.'s intruder definition: the leading 10 left singular vectors of W + ΔW, an intruder
# when its largest |cos| with W's vectors is below 0.5 (the spectra probe's defaults; the report reads them here)
INTRUDER_TOP = 10
INTRUDER_THRESHOLD = 0.5


def intruder_summary(best: np.ndarray, threshold: float) -> tuple[int, float]:
    """(count of intruders, smallest max-cosine) from each top vector's max-cosine with W's vectors."""
    return int((best < threshold).sum()), float(best.min())


def intruders(base_left: np.ndarray, tuned: np.ndarray, top: int = INTRUDER_TOP,
              threshold: float = INTRUDER_THRESHOLD) -> tuple[int, float]:
    """(count, smallest max-cosine) of intruder directions among the ``top`` left singular vectors of ``tuned``.

    ``base_left`` holds the base W's left singular vectors as columns: all of them for the
    paper's definition, or only the leading ones (cheaper for large matrices, but then a
    direction that merely moved down W's spectrum also counts as an intruder).
    """
    y, _, _ = top_singular_vectors(tuned, top)
    if y.shape[1] == 0 or base_left.shape[1] == 0:
        return 0, float("nan")
    return intruder_summary(max_cosines(y, base_left), threshold)
