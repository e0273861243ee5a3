"""W + ΔW's leading singular triplets from W's decomposition and the factors (the low-rank route),
against numpy's SVD of W + s·B·A formed densely."""

from __future__ import annotations

import numpy as np
import pytest

from lab.deltas import Factors
from lab.errors import NonFiniteError
from lab.kernels import subspaces
from lab.kernels.memo import memo_for


def _pair(rows: int, cols: int, r: int, seed: int, rank: int | None = None) -> tuple[np.ndarray, Factors]:
    """W with distinct, decaying singular values (so every triplet is determined) and a rank-r update."""
    rng = np.random.default_rng(seed)
    n = min(rows, cols)
    q1, _ = np.linalg.qr(rng.standard_normal((rows, n)))
    q2, _ = np.linalg.qr(rng.standard_normal((cols, n)))
    sigma = 3.0 * 0.97 ** np.arange(n)
    if rank is not None:
        sigma[rank:] = 0.0
    w = (q1 * sigma) @ q2.T
    return w, Factors(0.3 * rng.standard_normal((rows, r)), 0.3 * rng.standard_normal((r, cols)), 1.7)


def _check_against_numpy(w: np.ndarray, f: Factors, k: int) -> None:
    u, s, v = subspaces.tuned_singular_vectors(w, f, k)
    dense = w + f.scale * (f.B @ f.A)
    uu, ss, vvt = np.linalg.svd(dense)
    assert s.shape == (k,) and u.shape == (w.shape[0], k) and v.shape == (w.shape[1], k)
    np.testing.assert_allclose(s, ss[:k], rtol=0, atol=1e-12 * ss[0])
    # same directions up to sign (the σ are distinct: each singular vector is determined)
    np.testing.assert_allclose(np.abs(np.sum(u * uu[:, :k], axis=0)), 1.0, atol=1e-9)
    np.testing.assert_allclose(np.abs(np.sum(v * vvt[:k].T, axis=0)), 1.0, atol=1e-9)
    np.testing.assert_allclose(u.T @ u, np.eye(k), atol=1e-12)
    np.testing.assert_allclose(dense @ v, u * s, atol=1e-10 * ss[0])


@pytest.mark.parametrize("shape", [(160, 64), (64, 160), (96, 96)], ids=["tall", "wide", "square"])
@pytest.mark.parametrize("k", [5, 40], ids=["lanczos", "dense"])
def test_low_rank_route_equals_numpys_svd_of_the_sum(shape, k):
    w, f = _pair(*shape, r=6, seed=sum(shape) + k)
    assert subspaces._low_rank_update(w, f, k) is not None  # the route under test is the one taken
    _check_against_numpy(w, f, k)


def test_low_rank_route_reads_ws_decomposition_from_the_memo():
    # what a sweep's later checkpoint does: W's decomposition found in the memo (from disk), not solved
    w, f = _pair(120, 48, r=4, seed=3)
    first = subspaces.tuned_singular_vectors(w, f, 8)
    kept = memo_for(w)["pure:svd:all"]
    w2 = w.copy()
    memo_for(w2)["pure:svd:all"] = tuple(a.copy(order="K") for a in kept)  # in memory order, as the cache keeps it
    again = subspaces.tuned_singular_vectors(w2, f, 8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_rank_deficient_or_large_bases_take_the_dense_route_and_stay_exact():
    w, f = _pair(100, 40, r=3, seed=5, rank=30)  # W spans 30 of 40 directions: no complete basis
    assert subspaces._low_rank_update(w, f, 6) is None
    _check_against_numpy(w, f, 6)
    big, g = _pair(700, 600, r=2, seed=6)  # W's small side ≥ LANCZOS_FROM: W solved partially, no route
    assert subspaces._low_rank_update(big, g, 4) is None


def test_extreme_magnitudes_take_the_dense_route():
    w, f = _pair(80, 40, r=3, seed=7)
    assert subspaces._low_rank_update(w * 1e150, f, 4) is None
    u, s, _ = subspaces.tuned_singular_vectors(w * 1e150, f, 4)
    np.testing.assert_allclose(s, np.linalg.svd(w * 1e150 + f.to_dense(), compute_uv=False)[:4], rtol=1e-10)


def test_a_sum_that_is_not_finite_raises():
    w, f = _pair(40, 20, r=2, seed=8)
    w[0, 0] = np.inf
    with pytest.raises(NonFiniteError):
        subspaces.tuned_singular_vectors(w, f.to_dense(), 3)


def test_repeated_singular_values_of_w_are_all_found():
    # W + ΔW's structured Gram repeats each σ² that W repeats (beyond what the rank-2r term moves): Lanczos
    # from one start vector finds a single direction of such an eigenvalue and would report the next one
    # instead; the certificate sends that case to the dense solve of the same matrix
    w = np.kron(np.eye(2), np.diag(np.repeat([3.0, 2.0, 1.0], 64)))  # 384×384, each σ 128 times
    rng = np.random.default_rng(0)
    f = Factors(0.1 * rng.standard_normal((384, 2)), 0.1 * rng.standard_normal((2, 384)), 1.0)
    assert subspaces._low_rank_update(w, f, 10) is not None
    _, s, _ = subspaces.tuned_singular_vectors(w, f, 10)
    np.testing.assert_allclose(s, np.linalg.svd(w + f.to_dense(), compute_uv=False)[:10], rtol=0, atol=1e-12)
    assert s[-1] == pytest.approx(3.0, abs=1e-9)  # the tenth is still a copy of W's σ = 3
