"""LoRA-LEGO as its paper merges (lab.kernels.merging.lego) against a hand computation, and proof that
it never reads the exact sum T it is scored against (lego-oracle does)."""

from __future__ import annotations

import numpy as np
import pytest

from lab.deltas import Factors
from lab.kernels import merging


def _three_units():
    """Three rank-1 adapters (m = 4, n = 3): units 1 and 2 nearly parallel, unit 3 far from both.

    Unit 2 is given with both factors negated (b·aᵀ = (−b)(−a)ᵀ) and a larger scale, so the
    clustering must align signs and the centroid is not a plain mean of the stored factors.
    """
    b1, a1 = np.array([1.0, 0.2, 0.0, 0.1]), np.array([0.5, 1.0, 0.1])
    b2, a2 = np.array([0.9, 0.3, 0.1, 0.0]), np.array([0.6, 0.9, 0.0])
    b3, a3 = np.array([0.0, 0.1, 1.0, -0.8]), np.array([-0.2, 0.1, 1.5])
    return [Factors(b1[:, None], a1[None], 2.0), Factors(-b2[:, None], -a2[None], 3.0), Factors(b3[:, None], a3[None], 0.5)]


def _by_hand(fs, weights, k, clusters, size=np.linalg.norm):
    """The paper's formulas written out with numpy for a given clustering (lists of unit indices)."""
    J = len(fs)
    X = []
    for f, w in zip(fs, weights):  # balanced MSU [b'; a'] of c·b·aᵀ, c = J·w·s
        c = J * w * f.scale
        b, a = f.B[:, 0], f.A[0]
        mag = np.sqrt(abs(c) * np.linalg.norm(b) * np.linalg.norm(a))
        X.append(np.concatenate([np.sign(c) * b / np.linalg.norm(b) * mag, a / np.linalg.norm(a) * mag]))
    X = np.array(X)
    M = np.zeros((4, 3))
    for members in clusters:
        first = X[members[0]]
        aligned = [x if x @ first >= 0 else -x for x in X[members]]  # sign-aligned to the cluster
        mu = np.mean(aligned, axis=0)
        mu = mu * np.mean([size(x) for x in X[members]]) / size(mu)  # parameter reweighting
        M += np.outer(mu[:4], mu[4:])  # one centroid per cluster, not times its size
    r = np.mean([f.B.shape[1] for f in fs])
    return np.sqrt(r / k) * M  # output reweighting


def test_lego_matches_the_papers_formulas_by_hand_on_three_units():
    fs, w = _three_units(), [1 / 3] * 3
    got = merging.lego(fs, w, k=2, seed=0).to_dense()
    want = _by_hand(fs, w, 2, [[0, 1], [2]])
    assert np.abs(got - want).max() < 1e-12 * np.abs(want).max()
    # the reimplementation's norm, the largest entry
    got_inf = merging.lego(fs, w, k=2, seed=0, norm=np.inf).to_dense()
    want_inf = _by_hand(fs, w, 2, [[0, 1], [2]], size=lambda v: np.abs(v).max())
    assert np.abs(got_inf - want_inf).max() < 1e-12 * np.abs(want_inf).max()
    assert np.abs(got_inf - got).max() > 1e-6 * np.abs(want).max()
    # both reweightings do something here: the parameter step (non-parallel members) and √(r/k) = √(1/2)
    plain = merging.lego(fs, w, k=2, seed=0, reweight=False).to_dense()
    assert np.linalg.norm(got - plain) > 0.1 * np.linalg.norm(want)


def test_lego_never_reads_the_exact_sum(monkeypatch):
    """With the functions that form T (stack) or an inner product with it (inner) made to fail, lego
    gives the same answer; lego-oracle, which fits its scale to T, cannot run."""
    fs, w = _three_units(), [1 / 3] * 3
    before = merging.lego(fs, w, k=2, seed=0).to_dense()

    def refuse(*args, **kwargs):
        raise AssertionError("the exact sum was read")

    monkeypatch.setattr(merging, "stack", refuse)
    monkeypatch.setattr(merging, "inner", refuse)
    np.testing.assert_array_equal(merging.lego(fs, w, k=2, seed=0).to_dense(), before)
    with pytest.raises(AssertionError, match="exact sum"):
        merging.lego_oracle(fs, w, k=2, seed=0)


def test_lego_differs_from_what_using_the_sum_would_give():
    """On these inputs the least-squares scale against T is far from the paper's √(r/k): an
    implementation that used T would land elsewhere, and the oracle's error is the smaller."""
    fs, w = _three_units(), [1 / 3] * 3
    T = sum(wj * f.to_dense() for wj, f in zip(w, fs))
    M = merging.lego(fs, w, k=2, seed=0).to_dense()
    gamma = (M * T).sum() / (M * M).sum()
    assert abs(gamma - 1) > 0.05
    assert np.linalg.norm(M - T) > np.linalg.norm(gamma * M - T) * 1.05
    oracle = merging.lego_oracle(fs, w, k=2, seed=0)
    assert np.linalg.norm(oracle.to_dense() - T) < np.linalg.norm(M - T)


def test_identical_adapters_merge_to_the_adapter():
    """J copies of one adapter at k = r: each cluster holds J copies of a unit, so the merge is the
    adapter itself (the mean), whatever J (the paper's norm restoration, no cluster-size factor)."""
    rng = np.random.default_rng(5)
    f = Factors(rng.normal(size=(12, 3)), rng.normal(size=(3, 9)), 0.7)
    for J in (2, 4):
        got = merging.lego([f] * J, [1 / J] * J, k=3, seed=1).to_dense()
        assert np.linalg.norm(got - f.to_dense()) / np.linalg.norm(f.to_dense()) < 1e-12


def test_every_unit_its_own_cluster_is_the_sum_times_root_r_over_k():
    """k = the pooled units: no clustering, parameter reweighting the identity, output × √(r/k)."""
    rng = np.random.default_rng(6)
    fs = [Factors(rng.normal(size=(10, 2)), rng.normal(size=(2, 8)), s) for s in (1.0, -0.5, 2.0)]
    w = [0.2, 0.5, 0.3]
    got = merging.lego(fs, w, k=6).to_dense()
    units = sum(3 * wj * f.to_dense() for wj, f in zip(w, fs))  # unit j enters as J·w_j·s_j·b·aᵀ
    assert np.linalg.norm(got - np.sqrt(2 / 6) * units) / np.linalg.norm(units) < 1e-12
