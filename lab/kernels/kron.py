"""A Kronecker-product update M = s·kron(W1, W2) (LoKr) analysed from its two small factors.

W1 is a×b, W2 is c×d, M is (a·c)×(b·d) with M[i1·c + i2, j1·d + j2] = s·W1[i1, j1]·W2[i2, j2].

* **Singular values** (exact): M = s·(U1 ⊗ U2)(Σ1 ⊗ Σ2)(V1 ⊗ V2)ᵀ, so σ(M) are all the products
  |s|·σ(W1)_i·σ(W2)_j: rank(W1)·rank(W2) of them, from two small spectra (each factor dense or
  :class:`~lab.deltas.Factors`, whose spectrum is its r×r core's).
* **Entanglement profile**: ψ = vec(M) (row-major) lives on the chain of sites of
  :mod:`lab.kernels.tensorize`: the prime factors of a·c ascending, then of b·d ascending. Writing
  the row index i = i1·c + i2 in that chain's mixed radix puts i1 on the first sites and i2 on the
  rest exactly when the chain's row sites are W1's row primes followed by W2's; likewise for the
  columns. The sites are **aligned** with the Kronecker split when

      sorted primes(a·c) = primes(a) ++ primes(c)   and   sorted primes(b·d) = primes(b) ++ primes(d),

  i.e. no prime of a is larger than a prime of c, and none of b larger than one of d (a factor of 1
  has no primes and always aligns). Then ψ = ψ1 ⊗ ψ2 over interleaved sites (W1's row sites, W2's
  row sites, W1's column sites, W2's column sites), and a cut after k sites splits each factor's own
  chain (its row primes, then its column primes) at an induced cut: with p, q W1's row and column
  site counts and R the chain's row sites,

      k ≤ R:  W1 cut min(k, p),          W2 cut max(0, k − p)
      k > R:  W1 cut p + min(k − R, q),  W2 cut (R − p) + max(0, k − R − q)

  (cut 0 or the last site: the factor lies wholly on one side, entropy 0). The Schmidt coefficients
  at k are the outer product of the factors' at their induced cuts, so the von Neumann and Rényi-2
  entropies are sums of the factors' entropies. Any a (and b) that is a power of two aligns:
  LoKr's ``decompose_factor`` 2^m, and PEFT's default split (−1: a ≤ c near √n) of 32 = 4·8,
  96 = 8·12, 384 = 16·24 (2⁴ | 2³·3), 1024 … 8192, 4864 = 64·76. 48 = 6·8 (2·3 | 2³), 576 = 24·24,
  768 = 24·32 (2³·3 | 2⁵), 11008 = 86·128 (2·43 | 2⁷), 14336 = 112·128 and 3·128 do not: there the
  profile is the dense one of the multiplied-out M (rows and columns must both align).
"""

from __future__ import annotations

import numpy as np

from lab.deltas import Factors, Kron
from lab.kernels import factored, linalg
from lab.kernels.schmidt import schmidt_spectra
from lab.kernels.spectrum import entropies
from lab.kernels.tensorize import Sites, prime_factors, sites as chain_sites


def factor_singular_values(w: np.ndarray | Factors) -> np.ndarray:
    """The singular values of one Kronecker factor, descending (a Factors factor: its r×r core)."""
    return factored.core_singular_values(w) if isinstance(w, Factors) else linalg.dense_singular_values(w)


def singular_values(k: Kron) -> np.ndarray:
    """All |s|·σ(W1)_i·σ(W2)_j, descending: the singular values of s·kron(W1, W2), exactly."""
    s1, s2 = factor_singular_values(k.W1), factor_singular_values(k.W2)
    return np.sort(abs(k.scale) * np.outer(s1, s2).reshape(-1))[::-1]


def interleaved_sites(k: Kron) -> Sites:
    """W1's and W2's sites interleaved: W1's row primes, W2's, then W1's column primes, W2's."""
    (a, b), (c, d) = k.W1.shape, k.W2.shape
    rows = prime_factors(a) + prime_factors(c)
    return Sites(dims=rows + prime_factors(b) + prime_factors(d), row_sites=len(rows))


def aligned(k: Kron, st: Sites | None = None) -> bool:
    """Whether the chain ``st`` (default: the matrix's own, :func:`lab.kernels.tensorize.sites`) is
    the interleaved one, so that the profile follows from the factors (see the module docstring)."""
    return interleaved_sites(k) == (st if st is not None else chain_sites(*k.shape))


def induced_cuts(k: int, p: int, q: int, row_sites: int) -> tuple[int, int]:
    """(W1's cut, W2's cut) in their own chains induced by cut ``k`` of the aligned chain."""
    if k <= row_sites:
        return min(k, p), max(0, k - p)
    return p + min(k - row_sites, q), (row_sites - p) + max(0, k - row_sites - q)


def _factor_entropies(w: np.ndarray | Factors) -> tuple[np.ndarray, np.ndarray]:
    """(von Neumann, Rényi-2) of one factor at its own cuts 0 … N (0 at both ends), nats.

    ``w`` is a float64 array or :class:`Factors` (a Kron's factors never are a Kron), and the caller
    has checked that it is finite and nonzero: its Schmidt spectra are those the entanglement
    profile would compute (factored factors stay factored)."""
    st = chain_sites(*w.shape)
    zero = np.zeros(1)
    if st.n_sites < 2:
        return np.zeros(st.n_sites + 1), np.zeros(st.n_sites + 1)
    pairs = [entropies(p) for p in schmidt_spectra(w, st)]
    vn = np.array([v for v, _ in pairs], dtype=np.float64)
    renyi2 = np.array([r for _, r in pairs], dtype=np.float64)
    return np.concatenate([zero, vn, zero]), np.concatenate([zero, renyi2, zero])


def profile_entropies(k: Kron, st: Sites) -> tuple[np.ndarray, np.ndarray] | None:
    """(von Neumann, Rényi-2) at every cut of ``st`` from the two factors' profiles, or None when
    the sites are not aligned with the split (then only the dense profile is exact).

    A zero update (s = 0, or a zero factor: LoKr's initialisation) has no state: NaN, as for a zero
    dense matrix. ``k`` must be finite (the caller checks).
    """
    if not aligned(k, st):
        return None
    n_cuts = st.n_sites - 1
    if k.scale == 0.0 or any(_is_zero(w) for w in (k.W1, k.W2)):
        return np.full(n_cuts, np.nan), np.full(n_cuts, np.nan)
    (a, b) = k.W1.shape
    p, q = len(prime_factors(a)), len(prime_factors(b))
    vn1, r1 = _factor_entropies(k.W1)
    vn2, r2 = _factor_entropies(k.W2)
    cuts = [induced_cuts(int(c), p, q, st.row_sites) for c in st.cuts]
    vn = np.array([vn1[i] + vn2[j] for i, j in cuts], dtype=np.float64)
    renyi2 = np.array([r1[i] + r2[j] for i, j in cuts], dtype=np.float64)
    return vn, renyi2


def _is_zero(w: np.ndarray | Factors) -> bool:
    if isinstance(w, Factors):
        return w.scale == 0.0 or not w.B.any() or not w.A.any() or w.fro_norm() == 0.0
    return not w.any()
