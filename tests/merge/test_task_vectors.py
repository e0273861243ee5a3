"""TIES, DARE, magnitude pruning and task arithmetic (lab.kernels.task_vectors) against a direct numpy
implementation written here from the definitions, on small dense task vectors; the radix selection
against np.sort; the rank-k truncation against numpy's SVD."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lab.kernels import task_vectors as tvm


def _numpy_trim(t, d):
    k = int(d * t.size)
    if k == 0:
        return np.zeros_like(t)
    t_k = np.sort(np.abs(t).ravel())[::-1][k - 1]
    return np.where(np.abs(t) >= t_k, t, 0.0)


def _numpy_elect_merge(taus, w):
    total = np.sum(taus, axis=0)
    sigma = np.where(total >= 0, 1, -1)
    num = np.zeros_like(taus[0])
    cnt = np.zeros_like(taus[0])
    for wj, t in zip(w, taus):
        keep = np.sign(t) == sigma
        num += wj * t * keep
        cnt += keep
    return num / np.maximum(cnt, 1)


def _numpy_masks(shapes, d, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.bernoulli(torch.full(s, d, dtype=torch.float32), generator=g).numpy().astype(float) for s in shapes]


def numpy_merge(taus, w, method, d, seed=0):
    if method == "task_arithmetic":
        return sum(wj * t for wj, t in zip(w, taus))
    if method == "magnitude_prune":
        return sum(wj * _numpy_trim(t, d) for wj, t in zip(w, taus))
    if method == "ties":
        return _numpy_elect_merge([_numpy_trim(t, d) for t in taus], w)
    dropped = [t * mk / d for t, mk in zip(taus, _numpy_masks([t.shape for t in taus], d, seed))]
    if method == "dare_linear":
        return sum(wj * t for wj, t in zip(w, dropped))
    return _numpy_elect_merge(dropped, w)


@pytest.fixture
def dense_taus():
    rng = np.random.default_rng(0)
    return [rng.normal(size=(13, 11)) for _ in range(3)]


@pytest.mark.parametrize("method", tvm.METHODS)
@pytest.mark.parametrize("rows", [None, 3])
def test_methods_equal_numpy_on_dense_task_vectors(dense_taus, method, rows):
    w = [0.5, -0.3, 1.2]
    d = 0.4
    gen = torch.Generator().manual_seed(5)
    got = tvm.merge([tvm.TaskVector(t) for t in dense_taus], w, method, d, generator=gen, rows=rows)
    want = numpy_merge(dense_taus, w, method, d, seed=5)
    np.testing.assert_allclose(got.M, want, rtol=1e-13, atol=1e-13)
    T = sum(wj * t for wj, t in zip(w, dense_taus))
    assert got.diff_fro == pytest.approx(np.linalg.norm(want - T), rel=1e-12, abs=1e-13)
    assert got.target_fro == pytest.approx(np.linalg.norm(T), rel=1e-12)


@pytest.mark.parametrize("method", tvm.METHODS)
def test_whole_updates_merged_a_few_rows_at_a_time_equal_numpy_and_leave_the_inputs(dense_taus, method, monkeypatch):
    """Updates held whole are merged in place chunk after chunk (here 2 rows a chunk): the same M, and
    the caller's dense arrays untouched (the merge works on its own copies)."""
    monkeypatch.setattr(tvm, "CHUNK_ENTRIES", 2 * 11)
    before = [t.copy() for t in dense_taus]
    w = [0.5, -0.3, 1.2]
    got = tvm.merge([tvm.TaskVector(t) for t in dense_taus], w, method, 0.4, generator=torch.Generator().manual_seed(5))
    np.testing.assert_allclose(got.M, numpy_merge(before, w, method, 0.4, seed=5), rtol=1e-13, atol=1e-13)
    for t, b in zip(dense_taus, before):
        np.testing.assert_array_equal(t, b)


@pytest.mark.parametrize("method", tvm.METHODS)
def test_factored_task_vectors_in_row_blocks_equal_dense(method):
    """A LoRA update given as factors and streamed 4 rows at a time gives the dense merge."""
    rng = np.random.default_rng(1)
    facs = [(rng.normal(size=(17, 3)), rng.normal(size=(3, 9))) for _ in range(2)]
    w = [0.7, 0.3]
    streamed = tvm.merge([tvm.TaskVector(L, R) for L, R in facs], w, method, 0.3,
                         generator=torch.Generator().manual_seed(2), rows=4)
    want = numpy_merge([L @ R for L, R in facs], w, method, 0.3, seed=2)
    np.testing.assert_allclose(streamed.M, want, rtol=1e-12, atol=1e-12)


def test_ties_sign_election_and_disjoint_mean_by_hand():
    """Entry by entry: trimmed entries agree with no sign, the sum's sign wins, ties of the sum go to +."""
    a = np.array([[3.0, -1.0, 2.0, 0.5]])
    b = np.array([[-1.0, -4.0, -2.0, 0.1]])
    got = tvm.merge([tvm.TaskVector(a), tvm.TaskVector(b)], [1.0, 1.0], "ties", density=1.0).M
    # sums 2, -5, 0 (+), 0.6: elected +, -, +, +; agreeing entries averaged
    np.testing.assert_array_equal(got, [[3.0, -2.5, 2.0, 0.3]])
    trimmed = tvm.merge([tvm.TaskVector(a), tvm.TaskVector(b)], [1.0, 1.0], "ties", density=0.5).M
    # a keeps 3, 2 (2 of 4); b keeps -4, -2: sums 3, -4, 0 (+), 0
    np.testing.assert_array_equal(trimmed, [[3.0, -4.0, 2.0, 0.0]])


def test_density_one_is_task_arithmetic_and_dare_rescales_in_expectation():
    rng = np.random.default_rng(3)
    taus = [rng.normal(size=(40, 50)) for _ in range(2)]
    tv = [tvm.TaskVector(t) for t in taus]
    T = taus[0] + taus[1]
    for method in ("magnitude_prune", "dare_linear"):
        np.testing.assert_array_equal(tvm.merge(tv, [1, 1], method, 1.0, generator=torch.Generator()).M, T)
    many = np.mean([tvm.merge(tv, [1, 1], "dare_linear", 0.5, generator=torch.Generator().manual_seed(s)).M
                    for s in range(200)], axis=0)
    assert np.abs(many - T).mean() < 0.15 * np.abs(T).mean()  # unbiased: E[mask/d] = 1


@pytest.mark.parametrize("gather", [tvm.GATHER, 5, 0])
def test_kth_largest_abs_radix_selection_equals_sort(gather):
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(size=500), rng.normal(size=200) * 1e-30, np.zeros(20), [7.0, 7.0, -7.0]])
    blocks = lambda: iter(np.array_split(x, 7))
    ordered = np.sort(np.abs(x))[::-1]
    for k in (1, 2, 3, 4, 100, 600, 720, x.size):
        assert tvm.kth_largest_abs(blocks, k, gather=gather) == ordered[k - 1]


@pytest.mark.parametrize("d", [0.001, 0.3, 0.5, 0.97, 0.99999])
def test_threshold_of_a_whole_update_equals_sort(d):
    """The sampled bracket (more than 2^15 entries) and its fallbacks give np.sort's ⌊d·n⌋-th largest |x|."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(300, 170)) * np.linspace(1, 50, 170)
    x[:20] = 0.0  # zeros, and a block of equal magnitudes
    x[20:40, :50] = -2.5
    k = int(d * x.size)
    assert tvm._threshold_in_memory(x, d) == np.sort(np.abs(x).ravel())[::-1][k - 1]


@pytest.mark.parametrize("d", [0.001, 0.3, 0.97])
@pytest.mark.parametrize("gather", [tvm.GATHER, 50])
def test_streamed_threshold_equals_sort(d, gather, monkeypatch):
    """trim_threshold over row blocks of a factored update (sampled bracket, or radix selection when the
    bracket holds too many entries) gives np.sort's ⌊d·m·n⌋-th largest |x|."""
    rng = np.random.default_rng(7)
    L, R = rng.normal(size=(200, 3)) * np.linspace(0.1, 5, 200)[:, None], rng.normal(size=(3, 60))
    k = int(d * 200 * 60)
    bracketed = tvm._bracketed(tvm.TaskVector(L, R), k, 17, gather=gather)  # before GATHER is patched
    monkeypatch.setattr(tvm, "GATHER", gather)
    want = np.sort(np.abs(L @ R).ravel())[::-1][k - 1]
    assert tvm.trim_threshold(tvm.TaskVector(L, R), d, rows=17) == want
    assert bracketed == want if gather > 50 else bracketed in (want, None)


@pytest.mark.parametrize("dense_below", [1024, 10])  # LAPACK, PROPACK
def test_truncation_is_numpy_best_rank_k(dense_below):
    rng = np.random.default_rng(5)
    M = rng.normal(size=(120, 90)) * np.linspace(3, 0.1, 90)
    U, s, Vt = np.linalg.svd(M, full_matrices=False)
    for k in (1, 5, 8):
        t = tvm.truncate(M, k, dense_below=dense_below, rows=7)
        best = (U[:, :k] * s[:k]) @ Vt[:k]
        np.testing.assert_allclose(t.L @ t.R, best, atol=1e-11 * s[0])
        np.testing.assert_allclose(t.sigma, s[:k], rtol=1e-12)
        assert t.residual_fro == pytest.approx(np.sqrt((s[k:] ** 2).sum()), rel=1e-10)


@pytest.mark.parametrize("method", tvm.METHODS)
def test_merge_truncated_is_merge_then_truncate_and_its_buffers_alias_nothing_held(method):
    """merge_truncated (M, the updates and the masks in buffers reused from call to call) gives the
    same numbers as merge then truncate; results held from earlier calls stay as they were."""
    rng = np.random.default_rng(7)
    shapes = [(40, 30), (30, 40), (40, 30), (12, 50)]
    inputs = [[tvm.TaskVector(rng.normal(size=(m, 3)), rng.normal(size=(3, n))) for _ in range(2)] for m, n in shapes]
    held, copies = [], []
    g_a, g_b = torch.Generator().manual_seed(8), torch.Generator().manual_seed(8)
    for tvs in inputs:
        want = tvm.merge(tvs, [0.6, 0.4], method, 0.5, generator=g_a)
        want_cut = tvm.truncate(want.M, 4)
        dense, cut = tvm.merge_truncated(tvs, [0.6, 0.4], method, 4, 0.5, generator=g_b)
        assert dense.M is None and (dense.diff_fro, dense.target_fro) == (want.diff_fro, want.target_fro)
        for x, y in ((cut.L, want_cut.L), (cut.R, want_cut.R), (cut.sigma, want_cut.sigma)):
            np.testing.assert_array_equal(x, y)
        assert cut.residual_fro == want_cut.residual_fro
        held.append(cut)
        copies.append((cut.L.copy(), cut.R.copy()))
    for cut, (L, R) in zip(held, copies):
        np.testing.assert_array_equal(cut.L, L)
        np.testing.assert_array_equal(cut.R, R)
