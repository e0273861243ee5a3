"""cut_bounds (lab/finetune/mps_layout.py) against numpy's SVD at every cut of an MPS update.

The update is written out from the method's definition in numpy, not through lab:
ΔW = B·A_MPS, A_MPS[a, (i1, i2)] = Σ_c C1[a, i1, c]·C2[c, i2] (row-major i = i1·d2 + i2), with
Gaussian cores. The cut's dimensions come from this file's own prime factorisation, its rank from
``np.linalg.svd`` of ψ reshaped to (D_left, D_right). At every cut the rank is at most the bound
and the von Neumann entropy at most its log; at every cut χ is said to govern, the rank of generic
cores equals χ's bound, and a LoRA update of the same B and an unconstrained A (what the bound
would be without χ) has a larger rank there, so χ is what binds.
"""

from __future__ import annotations

import numpy as np
import pytest

from lab.finetune.mps_layout import choose_split, cut_bounds

# (rows, d1, d2, r, χ): small chains where χ governs some cuts and not others, two with an odd prime
# in the input, one with d1 > d2 (the MiniLM layer's 384 = 16·24 is the test after this one)
SHAPES = [
    (8, 4, 4, 4, 2), (6, 3, 4, 2, 1), (12, 4, 6, 8, 3), (4, 2, 9, 4, 2), (8, 8, 3, 4, 2),
    (12, 6, 4, 8, 5), (6, 3, 8, 2, 3), (16, 4, 8, 8, 2), (48, 4, 12, 8, 2),
]


def _primes(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def _mps_update(rows, d1, d2, r, chi, seed):
    g = np.random.default_rng(seed)
    B, C1, C2 = g.standard_normal((rows, r)), g.standard_normal((r, d1, chi)), g.standard_normal((chi, d2))
    A = np.einsum("aic,cj->aij", C1, C2).reshape(r, d1 * d2)
    return B, A, B @ A


def _rank_and_entropy(matrix: np.ndarray, d_left: int) -> tuple[int, float]:
    s = np.linalg.svd(matrix.reshape(d_left, -1), compute_uv=False)
    rank = int((s > s[0] * 1e-10).sum())
    p = s[:rank] ** 2 / (s[:rank] ** 2).sum()
    return rank, float(-(p * np.log(p)).sum())


@pytest.mark.parametrize("rows,d1,d2,r,chi", SHAPES)
def test_every_cut_against_numpy_svd(rows, d1, d2, r, chi):
    B, A, delta = _mps_update(rows, d1, d2, r, chi, seed=rows * 100 + r + chi)
    lora = B @ np.random.default_rng(1).standard_normal(A.shape)  # same B, an A without the bond
    dims = _primes(rows) + _primes(d1 * d2)
    bounds = cut_bounds(rows, d1, d2, chi, r)
    assert list(bounds.cuts) == list(range(1, len(dims))) and bounds.row_sites == len(_primes(rows))
    for i, k in enumerate(bounds.cuts):
        d_left = int(np.prod(dims[:k]))
        assert (bounds.d_left[i], bounds.d_right[i]) == (d_left, delta.size // d_left), k
        rank, entropy = _rank_and_entropy(delta, d_left)
        assert rank <= bounds.rank_bound[i], (k, rank, bounds.rank_bound[i])
        assert entropy <= bounds.entropy_bound[i] + 1e-9, k
        if bounds.governed[i]:
            assert rank == bounds.chi[i] == bounds.rank_bound[i], (k, rank, bounds.chi[i])
            assert _rank_and_entropy(lora, d_left)[0] > bounds.chi[i], k
    # outside the column sites χ bounds nothing
    assert not bounds.governed[bounds.cuts <= bounds.row_sites].any()


def test_the_d1_d2_cut_is_governed_on_the_minilm_layer():
    """The module docstring's example: 384 → 16·24; at the d1|d2 cut the bound is χ = 8 (ln 8 nats),
    the rank numpy finds there."""
    d1, d2 = choose_split(384)
    assert (d1, d2) == (16, 24)
    bounds = cut_bounds(384, d1, d2, 8, 64)
    k = int(np.flatnonzero(bounds.d_right == d2)[0])
    _, _, delta = _mps_update(384, d1, d2, 64, 8, seed=0)
    rank, _ = _rank_and_entropy(delta, 384 * d1)
    assert bounds.governed[k] and rank == bounds.rank_bound[k] == 8
    assert bounds.entropy_bound[k] == pytest.approx(np.log(8))


def test_a_larger_bond_than_the_bound_allows_is_seen():
    """The test can fail: cores with bond χ + 1 read against χ's bounds exceed them at a governed cut."""
    rows, d1, d2, r, chi = 12, 4, 6, 8, 2
    _, _, delta = _mps_update(rows, d1, d2, r, chi + 1, seed=3)
    bounds = cut_bounds(rows, d1, d2, chi, r)
    dims = _primes(rows) + _primes(d1 * d2)
    over = [rank > bounds.rank_bound[i] for i, k in enumerate(bounds.cuts)
            if bounds.governed[i] for rank in [_rank_and_entropy(delta, int(np.prod(dims[:k])))[0]]]
    assert over and all(over)
