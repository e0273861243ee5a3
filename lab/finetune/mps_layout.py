"""How an MPS adapter splits a module's input index, and what its bond dimension χ bounds.

MPS Adaptation (Artificial Entanglement, arXiv 2601.06788) writes ΔW = (α/r)·B·A_MPS with
A_MPS[a, (i1, i2)] = Σ_c C1[a, i1, c]·C2[c, i2], d_in = d1·d2 (row-major: i = i1·d2 + i2).

The split is chosen on the entanglement probe's chain (:func:`lab.kernels.tensorize.sites`): the
column sites are the prime factors of d_in in ascending order, and d2 is the product of the *last*
j of them, so the cut whose right side is the d2 sites is one of the probe's cuts and χ bounds the
entropy there. Of those suffix products the most balanced pair (|ln d1 − ln d2| smallest, the
larger d2 on a tie) is taken: 4096 → 64·64 (the paper's), 384 → 16·24.

The bound at each cut (rank of ψ reshaped to (D_left, D_right); entropy ≤ ln rank):

* ΔW[(o, i1), i2] = Σ_c (B·C1[:, :, c])[o, i1]·C2[c, i2]: a cut in the column sites whose right
  block is q·d2 (q divides d1; q = 1 is the d1|d2 cut) splits each of the χ terms into a product
  of a vector over the left indices and a q × d2 block, so rank ≤ χ·q.
* a cut inside the d2 sites with D_right = d2/t: each term is a vector over (o, i1) times C2[c]
  reshaped t × (d2/t), so rank ≤ χ·t.
* every column cut also has LoRA's bound r·D_left/rows (A has r rows), every cut the trivial
  min(D_left, D_right); the row sites see B only (LoRA's r·rows/D_left, which needs no χ).

χ *governs* a cut when its bound is the smallest of these; for MiniLM (384, r = 64, χ = 8,
d1·d2 = 16·24) that is the d1|d2 cut (ln 8 = 2.08 nats against ln 24 = 3.18) and its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.errors import InputError
from lab.kernels.tensorize import prime_factors, sites


def choose_split(d_in: int, d1: int | None = None, *, where: str = "") -> tuple[int, int]:
    """(d1, d2) with d1·d2 = d_in: the given d1, else the most balanced split on the probe's chain.

    InputError (one line, naming ``where``) when d_in is prime or 1 (no split with d1, d2 ≥ 2) or
    when ``d1`` does not divide d_in into two factors of at least 2.
    """
    at = f"{where}: " if where else ""
    if d1 is not None:
        if d1 < 2 or d_in % d1 or d_in // d1 < 2:
            raise InputError(f"{at}--d1 {d1} does not split the input dimension {d_in} into d1·d2 with d1, d2 ≥ 2; pass a divisor of {d_in} or leave --d1 out")
        return d1, d_in // d1
    factors = prime_factors(d_in)
    if len(factors) < 2:
        raise InputError(f"{at}input dimension {d_in} has no factorisation d1·d2 with d1, d2 ≥ 2 (it is {'prime' if d_in > 1 else '1'}); MPS adaptation cannot split it, adapt other modules")
    best = None
    for j in range(1, len(factors)):
        d2 = int(np.prod(factors[-j:]))
        d1_ = d_in // d2
        key = (abs(np.log(d1_) - np.log(d2)), -d2)
        if best is None or key < best[0]:
            best = (key, d1_, d2)
    return best[1], best[2]


@dataclass(frozen=True)
class CutBounds:
    """Per cut k = 1 … N−1 of the probe's chain: rank bounds (ints) and which one is smallest."""

    cuts: np.ndarray
    d_left: np.ndarray
    d_right: np.ndarray
    trivial: np.ndarray  # min(D_left, D_right)
    lora: np.ndarray  # r·rows/D_left in the row sites, r·D_left/rows in the column sites
    chi: np.ndarray  # χ·q or χ·t in the column sites (a huge value in the row sites: no χ bound)
    row_sites: int

    @property
    def rank_bound(self) -> np.ndarray:
        return np.minimum(np.minimum(self.trivial, self.lora), self.chi)

    @property
    def entropy_bound(self) -> np.ndarray:
        """ln of the rank bound, nats."""
        return np.log(self.rank_bound.astype(np.float64))

    @property
    def governed(self) -> np.ndarray:
        """Cuts where χ's bound is strictly below the trivial and LoRA bounds."""
        return self.chi < np.minimum(self.trivial, self.lora)


def cut_bounds(rows: int, d1: int, d2: int, chi: int, r: int) -> CutBounds:
    """The rank bounds of an MPS update of shape rows × (d1·d2) at every cut of the probe's chain."""
    st = sites(rows, d1 * d2)
    dl, dr = st.d_left, st.d_right
    big = np.iinfo(np.int64).max // 4
    in_rows = st.cuts < st.row_sites
    lora = np.where(in_rows, r * (rows // np.maximum(dl, 1)), r * np.maximum(dl // rows, 1))
    lora = np.where(st.cuts == st.row_sites, min(r, rows, d1 * d2), lora)
    chi_b = np.full(dl.shape, big, dtype=np.int64)
    for i, (k, R) in enumerate(zip(st.cuts, dr)):
        if k < st.row_sites:
            continue
        if R >= d2 and R % d2 == 0:
            chi_b[i] = chi * (R // d2)
        elif d2 % R == 0:
            chi_b[i] = chi * (d2 // R)
    return CutBounds(st.cuts, dl, dr, np.minimum(dl, dr), lora.astype(np.int64), chi_b, st.row_sites)


def trainable_params(rows: int, d1: int, d2: int, chi: int, r: int) -> int:
    """B (rows × r) + C1 (r × d1 × χ) + C2 (χ × d2): the paper's count (4096, r = 256, χ = 32,
    64·64 gives 1,574,912 against LoRA's 2,097,152)."""
    return rows * r + r * d1 * chi + chi * d2
