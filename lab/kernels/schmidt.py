"""Schmidt spectra at every cut of a matrix seen as a chain state, dense or factored, exactly.

For ψ = vec(M)/‖M‖_F (row-major) and a cut after k sites, ψ reshaped to (D_left, D_right) has
singular values √p_i; the p_i (Schmidt coefficients, Σ p_i = 1) are what every entropy needs.
No singular vectors are needed, so the p_i are the eigenvalues of a Gram matrix of the smaller
side, computed with float64 accumulation and a symmetric eigensolver.

Dense, all cuts for the price of about one: the reshape at cut k of a row-major vector is a plain
view, and the left Gram at cut k is a partial trace of the left Gram at cut k+1,

    G_k(i, i') = Σ_j G_{k+1}((i, j), (i', j)),

(the right Grams likewise shrink from left to right). So one matrix product on each side of the
centre (the largest left Gram and the largest right Gram) gives every Gram; the partial traces are
tiny, and the work is dominated by the eigensolve at the central cut. Each Gram's trace is ‖M‖²_F,
which normalises the p_i. :func:`cut_grams` (the partial traces) and :func:`spectra_of_grams`
(the eigensolves) are shared with :mod:`lab.kernels.blocked`, which accumulates the two largest
Grams block by block from a matrix too large to hold in float64.

Factored, s·B·A: see :mod:`lab.kernels.factored`; cuts inside the row sites reshape the row root
s·B·L (rows×r), cuts inside the column sites reshape the column root s·Kᵀ·A (r×cols), and the
row|column cut uses the r×r core. Nothing of size rows×cols is ever formed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from lab.kernels import factored
from lab.kernels import linalg as _linalg
from lab.kernels.linalg import SAFE_MAGNITUDE, gram as _gram, in_lanes, psd_eigvals as _psd_eigvals, rescaled as _rescaled
from lab.kernels.factored import Factors
from lab.kernels.memo import memo_for
from lab.kernels.tensorize import Sites


def _normalised(w: np.ndarray, trace: float) -> np.ndarray:
    if not trace > 0.0:
        return np.full(w.shape, np.nan)
    return w / trace


def cut_grams(st: Sites, left_gram: Callable[[int], np.ndarray],
              right_gram: Callable[[int], np.ndarray]) -> dict[int, np.ndarray]:
    """The smaller-side Gram matrix at every cut (index = cut − 1), from the two largest ones.

    ``left_gram(D)`` must return x·xᵀ for ψ reshaped (D, −1) at the last cut whose left side is
    the smaller, ``right_gram(D)`` yᵀ·y for ψ reshaped (−1, D) at the first cut whose right side
    is the smaller; each is called at most once. Every other Gram is a partial trace of these.
    In memory they are plain products of reshapes (:func:`_dense`); :mod:`lab.kernels.blocked`
    accumulates them from a :class:`~lab.sources.MatrixSource` block by block.
    """
    dl, dr, dims = st.d_left, st.d_right, st.dims
    n_cuts = len(dl)
    left = [i for i in range(n_cuts) if dl[i] <= dr[i]]  # cuts 1..c: the left Gram is the smaller
    right = [i for i in range(n_cuts) if dl[i] > dr[i]]  # cuts c+1..N-1: the right Gram
    grams: dict[int, np.ndarray] = {}
    if left:
        g = left_gram(int(dl[left[-1]]))
        for i in reversed(left):
            grams[i] = g
            if i > 0:  # one site fewer on the left: partial trace over site i (0-based)
                a, d = int(dl[i - 1]), dims[i]
                g = np.ascontiguousarray(g.reshape(a, d, a, d).trace(axis1=1, axis2=3))
    if right:
        h = right_gram(int(dr[right[0]]))
        for i in right:
            grams[i] = h
            if i + 1 < n_cuts:  # one site fewer on the right: partial trace over site i+1
                d, b = dims[i + 1], int(dr[i + 1])
                h = np.ascontiguousarray(h.reshape(d, b, d, b).trace(axis1=0, axis2=2))
    return grams


def spectra_of_grams(grams: dict[int, np.ndarray], eigvals: Callable[[np.ndarray], np.ndarray] = _psd_eigvals) -> list[np.ndarray]:
    """The Schmidt coefficients (eigenvalues / trace) of each cut's Gram, in cut order.

    Empties ``grams`` as it goes, so each Gram is freed once solved. ``eigvals`` solves one Gram
    (the blocked path passes one that reuses a solve the spectra probe also needs).
    """
    out: list[np.ndarray] = [np.zeros(0)] * len(grams)

    def solve(i: int) -> None:
        g = grams.pop(i)
        out[i] = _normalised(eigvals(g), float(np.trace(g)))

    # the numpy-sized solves first, on two one-thread lanes (largest first, so the two 2048² of a
    # 2048-wide chain go to different lanes), then the large ones on MKL's pool: the thread pools change
    # hands once (see lab.kernels.linalg). Each solve is the same call in any order: the same bits.
    small = sorted((i for i in grams if grams[i].shape[0] < _linalg.TORCH_FROM), key=lambda i: -grams[i].shape[0])
    in_lanes([lambda i=i: solve(i) for i in small])
    for i in sorted(grams, key=lambda i: grams[i].shape[0]):
        solve(i)
    return out


def _dense(m: np.ndarray, st: Sites) -> list[np.ndarray]:
    # a view when m is already C-contiguous float64; otherwise one float64 copy (the only one)
    rows = m.shape[0]
    psi = np.ascontiguousarray(m, dtype=np.float64).reshape(-1)
    # the p_i do not change when M is scaled; its Grams would overflow (underflow) near 1e±300
    psi, top = _rescaled(psi)
    grams = cut_grams(st, lambda d: _gram(psi.reshape(d, -1)),  # D_left ≤ D_right on the left: x·xᵀ
                      lambda d: _gram(psi.reshape(-1, d)))  # on the right yᵀ·y
    # the row|column cut's Gram is M·Mᵀ (rows ≤ cols) or MᵀM, the small-side Gram of M, whether it was
    # accumulated or is a partial trace of a larger one: its eigenvalues are σ² of M, which the spectra
    # probe reads instead of solving that matrix again (lab.kernels.memo)
    valley = grams.get(valley_index(st, rows))
    memo = memo_for(m)  # made here: the solves below may run on two threads

    def eigvals(g: np.ndarray) -> np.ndarray:
        w = _psd_eigvals(g)
        if g is valley and top == 1.0:
            memo["small_eigvals"] = w
        return w

    return spectra_of_grams(grams, eigvals)


def valley_index(st: Sites, rows: int) -> int | None:
    """The index in :func:`cut_grams`' dict of the row|column cut (k = row_sites, D_left = rows), None
    when the chain has no such cut."""
    i = st.row_sites - 1
    return i if 0 < st.row_sites < st.n_sites and int(st.d_left[i]) == int(rows) else None


def _factored(f: Factors, st: Sites) -> list[np.ndarray]:
    rows, cols = f.shape
    dl = st.d_left
    if not (f.scale != 0.0 and f.B.any() and f.A.any()):  # a zero update (PEFT's B = 0 at init)
        return [np.full(1, np.nan) for _ in st.cuts]
    # The p_i do not change when M is scaled: with a scale or factors near float64's limits
    # (α = 1e308, α = 1e-300) drop s and bring both factors to max |entry| = 1, so no Gram below
    # overflows or underflows; ordinary factors are used as they are.
    b, b_top = _rescaled(f.B)
    a, a_top = _rescaled(f.A)
    if b_top != 1.0 or a_top != 1.0 or not SAFE_MAGNITUDE[0] <= abs(f.scale) <= SAFE_MAGNITUDE[1]:
        f = Factors(b, a, 1.0)
    out: list[np.ndarray] = []
    r_root = c_root = None
    for i, k in enumerate(st.cuts):
        if k < st.row_sites:
            r_root = factored.row_root(f) if r_root is None else r_root
            g = _gram(r_root.reshape(int(dl[i]), -1))
            trace = float(np.trace(g))
            out.append(_normalised(_psd_eigvals(g), trace))
        elif k == st.row_sites:
            s2 = factored.core_singular_values(f) ** 2
            out.append(_normalised(s2, float(s2.sum())))
        else:
            c_root = factored.col_root(f) if c_root is None else c_root
            g = _gram(c_root.reshape(c_root.shape[0] * (int(dl[i]) // rows), -1))
            trace = float(np.trace(g))
            out.append(_normalised(_psd_eigvals(g), trace))
    return out


def schmidt_spectra(x: np.ndarray | Factors, st: Sites) -> list[np.ndarray]:
    """The Schmidt coefficients p_i (Σ p_i = 1, unsorted) at cuts 1 … N−1 of vec(x)/‖x‖_F.

    ``x`` is a dense 2-D array or :class:`~lab.kernels.factored.Factors`; a zero matrix gives NaN.
    """
    if isinstance(x, Factors):
        return _factored(x, st)
    return _dense(x, st)
