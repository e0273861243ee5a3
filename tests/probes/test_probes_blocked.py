"""Blocked kernels against the in-memory computation: Gram matrices against numpy products of the
whole matrix, Schmidt spectra against lab.kernels.schmidt, spectra and alignment against
lab.probes.spectra on the dense matrix; and every source's ranges against slices of the array."""

import pickle

import numpy as np
import pytest

from lab.errors import NonFiniteError, ShapeError
from lab.kernels import blocked, controls, schmidt
from lab.kernels.factored import Factors
from lab.sources import (
    GAUSSIAN_CHUNK, ArraySource, DifferenceSource, GaussianSource, MatrixSource, ScaledFactorsSource, as_source,
)
from lab.probes.spectra import SpectraOptions, alignment, alignment_numbers, spectrum
from lab.kernels.tensorize import sites


class Counting(ArraySource):
    """An ArraySource that counts its reads, to prove a budget really splits the work."""

    def __init__(self, array):
        super().__init__(array)
        self.reads = 0

    def _read(self, starts, length):
        self.reads += 1
        return super()._read(starts, length)


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def _entropy(p):
    p = np.asarray(p)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _conditioned(m, n, kappa, seed):
    """A rows×cols matrix with singular values spread geometrically from kappa to 1."""
    rng = np.random.default_rng(seed)
    k = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return (u * np.geomspace(kappa, 1.0, k)) @ v.T


SHAPES = [(3000, 64), (1536, 96), (1542, 96), (64, 3000), (97, 1200), (120, 120)]


# ---- Gram matrices -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_gram_of_the_matrix_equals_the_numpy_products_over_many_blocks(shape):
    m = np.random.default_rng(sum(shape)).standard_normal(shape)
    rows, cols = shape
    src = Counting(m)
    left = blocked.gram_left(src, rows, budget_bytes=8 * rows * 7)  # 7 columns per block
    assert src.reads == -(-cols // 7)
    assert _rel(left, m @ m.T) < 1e-12
    src = Counting(m)
    right = blocked.gram_right(src, cols, budget_bytes=8 * cols * 11)  # 11 rows per block
    assert src.reads == -(-rows // 11)
    assert _rel(right, m.T @ m) < 1e-12
    small = blocked.small_gram(ArraySource(m), budget_bytes=4096)
    assert _rel(small, m.T @ m if rows > cols else m @ m.T) < 1e-12  # square: M·Mᵀ, the row|column cut's Gram


@pytest.mark.parametrize("shape, d", [((3000, 64), 8), ((3000, 64), 600), ((1542, 96), 257 * 2), ((64, 3000), 40)])
def test_grams_at_inner_cuts_equal_the_products_of_the_reshaped_vector(shape, d):
    m = np.random.default_rng(d).standard_normal(shape)
    x_left = m.reshape(d, -1)
    x_right = m.reshape(-1, d)
    assert _rel(blocked.gram_left(ArraySource(m), d, budget_bytes=8 * d * 5), x_left @ x_left.T) < 1e-12
    assert _rel(blocked.gram_right(ArraySource(m), d, budget_bytes=8 * d * 5), x_right.T @ x_right) < 1e-12


def test_a_dimension_that_does_not_divide_the_matrix_is_refused():
    with pytest.raises(ValueError, match="does not divide"):
        blocked.gram_left(ArraySource(np.ones((6, 10))), 7)


@pytest.mark.parametrize("shape", [(700, 40), (40, 700), (50, 50)])
def test_grams_in_one_pass_equal_the_three_products(shape):
    rng = np.random.default_rng(shape[0])
    w, d = rng.standard_normal(shape), rng.standard_normal(shape)
    src_d, src_w = Counting(d), Counting(w)
    g = blocked.grams(src_d, src_w, budget_bytes=8 * 2 * 9 * min(shape))  # 9 lines per block and source
    tall = shape[0] > shape[1]  # a square matrix takes the row|column cut's side, M·Mᵀ
    assert g.tall == tall
    assert src_d.reads == src_w.reads == -(-max(shape) // 9)  # each block of each read once
    if tall:
        assert _rel(g.delta, d.T @ d) < 1e-12 and _rel(g.base, w.T @ w) < 1e-12 and _rel(g.cross, d.T @ w) < 1e-12
        assert _rel(blocked.cross_gram(ArraySource(d), ArraySource(w), budget_bytes=4096), d.T @ w) < 1e-12
    else:
        assert _rel(g.delta, d @ d.T) < 1e-12 and _rel(g.base, w @ w.T) < 1e-12 and _rel(g.cross, d @ w.T) < 1e-12
        assert _rel(blocked.cross_gram(ArraySource(d), ArraySource(w), budget_bytes=4096), d @ w.T) < 1e-12
    alone = blocked.grams(ArraySource(d), budget_bytes=4096)
    assert alone.base is None and alone.cross is None
    assert _rel(alone.delta, g.delta) < 1e-12


def test_grams_refuse_sources_of_different_shapes():
    with pytest.raises(ShapeError):
        blocked.grams(ArraySource(np.ones((4, 3))), ArraySource(np.ones((3, 4))))


def test_frobenius_norm_and_finiteness_stream():
    m = np.random.default_rng(2).standard_normal((301, 17))
    assert blocked.fro_norm_blocked(ArraySource(m), budget_bytes=8 * 100) == pytest.approx(np.linalg.norm(m), rel=1e-13)
    assert blocked.all_finite(ArraySource(m), budget_bytes=8 * 100)
    m[200, 3] = np.inf
    assert not blocked.all_finite(ArraySource(m), budget_bytes=8 * 100)


# ---- Schmidt spectra -----------------------------------------------------------------------------

def _structured(rows, cols, seed):
    """A matrix far from random: low rank plus a smooth part plus noise, so profiles have shape."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    low = rng.standard_normal((rows, 3)) @ rng.standard_normal((3, cols))
    return low + np.cos(0.01 * i * j / max(rows, cols)) + 0.05 * rng.standard_normal((rows, cols))


@pytest.mark.parametrize("shape", SHAPES + [(384, 384), (2 * 3 * 5 * 7, 11 * 13)])
@pytest.mark.parametrize("kind", ["gaussian", "structured"])
def test_blocked_schmidt_spectra_equal_the_dense_ones_at_every_cut(shape, kind):
    m = np.random.default_rng(1).standard_normal(shape) if kind == "gaussian" else _structured(*shape, seed=2)
    st = sites(*shape)
    dense = schmidt.schmidt_spectra(m, st)
    src = Counting(m)
    streamed = blocked.schmidt_spectra_blocked(src, st, budget_bytes=64 * 1024)
    assert src.reads > 2  # the budget forced several blocks
    assert len(streamed) == len(dense) == st.n_sites - 1
    for p, q in zip(dense, streamed):
        assert q.sum() == pytest.approx(1.0, abs=1e-12)
        assert _entropy(q) == pytest.approx(_entropy(p), rel=1e-10, abs=1e-12)
        assert np.allclose(np.sort(q), np.sort(p), rtol=0, atol=1e-13)


def test_blocked_schmidt_spectra_of_factors_equal_the_factored_path():
    rng = np.random.default_rng(5)
    f = Factors(rng.standard_normal((96, 4)), rng.standard_normal((4, 160)), 0.5)
    st = sites(96, 160)
    for p, q in zip(schmidt.schmidt_spectra(f, st), blocked.schmidt_spectra_blocked(ScaledFactorsSource(f), st, 4096)):
        assert _entropy(q) == pytest.approx(_entropy(p), rel=1e-9, abs=1e-12)


def test_a_zero_matrix_gives_nan_and_nonfinite_entries_raise():
    assert all(np.isnan(p).all() for p in blocked.schmidt_spectra_blocked(ArraySource(np.zeros((12, 18)))))
    m = np.ones((12, 18))
    m[5, 7] = np.nan
    src = ArraySource(m, name="w.safetensors: tensor 'x'")
    with pytest.raises(NonFiniteError, match="tensor 'x'"):
        blocked.schmidt_spectra_blocked(src, budget_bytes=8 * 12)
    assert src.finite is False
    with pytest.raises(NonFiniteError):
        blocked.spectrum_blocked(ArraySource(m))
    inf = np.full((4, 4), np.inf)
    with pytest.raises(NonFiniteError):  # inf − inf is NaN: checked on the difference itself
        blocked.fro_norm_blocked(DifferenceSource(ArraySource(inf), ArraySource(inf)))


def test_schmidt_refactor_keeps_the_dense_path_equal_to_direct_svds():
    m = _structured(24, 30, seed=4)
    st = sites(24, 30)
    for k, p in zip(st.cuts, schmidt.schmidt_spectra(m, st)):
        s = np.linalg.svd(m.reshape(int(st.d_left[k - 1]), -1), compute_uv=False)
        assert np.allclose(np.sort(p)[::-1][: s.size], s**2 / (s**2).sum(), atol=1e-14)


# ---- sources -------------------------------------------------------------------------------------

def _ranges(size, length, n, seed):
    return np.sort(np.random.default_rng(seed).integers(0, size - length + 1, n))


def _expected(flat, starts, length):
    return np.stack([flat[s : s + length] for s in starts]) if len(starts) else np.zeros((0, length))


def test_array_source_reads_ranges_across_rows_and_in_runs():
    m = np.random.default_rng(0).standard_normal((13, 7)).astype(np.float32)
    src = ArraySource(m)
    assert isinstance(src, MatrixSource) and src.nbytes == 13 * 7 * 8
    flat = m.astype(np.float64).reshape(-1)
    for length in (1, 5, 7, 20):
        starts = _ranges(91, length, 9, length)
        out = src.read(starts, length)
        assert out.dtype == np.float64 and np.array_equal(out, _expected(flat, starts, length))
    assert np.array_equal(src.read(np.arange(4) * 7, 7), flat[:28].reshape(4, 7))  # one run
    assert np.array_equal(src.to_array(), m.astype(np.float64))
    with pytest.raises(ValueError):
        src.read([85], 7)


def test_gaussian_source_gives_the_same_numbers_in_any_pieces():
    rows, cols = 150, 333  # several chunks, chunk edges inside rows
    assert rows * cols > 3 * GAUSSIAN_CHUNK
    src = GaussianSource(rows, cols, seed=4)
    whole = src.to_array()
    assert np.array_equal(whole, controls.gaussian_matrix(rows, cols, 4))
    flat = whole.reshape(-1)
    for length in (1, 100, GAUSSIAN_CHUNK + 7, 3 * GAUSSIAN_CHUNK):
        starts = _ranges(flat.size, length, 6, length)
        assert np.array_equal(src.read(starts, length), _expected(flat, starts, length))
    # a column block and a row block, as the kernels read them
    assert np.array_equal(src.read(np.arange(rows) * cols + 40, 17), whole[:, 40:57])
    assert np.array_equal(src.read(np.arange(20, 90) * cols, cols), whole[20:90])
    # the seed and the shape both choose the matrix; it is Gaussian
    assert not np.array_equal(GaussianSource(rows, cols, 5).to_array(), whole)
    assert not np.array_equal(GaussianSource(cols, rows, 4).to_array().reshape(-1), flat)
    assert abs(flat.mean()) < 0.02 and abs(flat.std() - 1.0) < 0.02
    assert np.array_equal(pickle.loads(pickle.dumps(src)).to_array(), whole)


def test_scaled_factors_source_reads_the_product_without_forming_it():
    rng = np.random.default_rng(3)
    f = Factors(rng.standard_normal((40, 3)), rng.standard_normal((3, 25)), -1.5)
    src = ScaledFactorsSource(f)
    dense = f.to_dense()
    flat = dense.reshape(-1)
    assert np.allclose(src.to_array(), dense, rtol=1e-14, atol=1e-14)
    for length in (1, 6, 25, 31, 80):
        starts = _ranges(flat.size, length, 8, length)
        assert np.allclose(src.read(starts, length), _expected(flat, starts, length), rtol=1e-14, atol=1e-13)
    col_block = src.read(np.arange(40) * 25 + 9, 10)  # one range per row: the grouped product
    assert np.allclose(col_block, dense[:, 9:19], rtol=1e-14, atol=1e-13)


def test_difference_source_subtracts_blockwise():
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((30, 20)), rng.standard_normal((30, 20))
    src = DifferenceSource(ArraySource(a), ArraySource(b))
    assert np.array_equal(src.to_array(), a - b)
    starts = _ranges(600, 33, 5, 1)
    assert np.array_equal(src.read(starts, 33), _expected((a - b).reshape(-1), starts, 33))
    with pytest.raises(ShapeError):
        DifferenceSource(ArraySource(a), ArraySource(b.T))


# ---- spectra and alignment -----------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(600, 40), (40, 600), (80, 80), (3000, 64)])
def test_blocked_spectrum_equals_the_dense_spectrum(shape):
    m = _conditioned(*shape, kappa=100.0, seed=shape[1])
    s = spectrum(m)
    b = blocked.spectrum_blocked(ArraySource(m), budget_bytes=8 * 1000)
    # Gram route: relative error ~ (√M + N)·ε·κ²/2 ≈ 1e-10 here
    assert np.allclose(b.sigma, s.sigma, rtol=1e-9, atol=0)
    assert (b.rows, b.cols, b.rank_bound) == (s.rows, s.cols, s.rank_bound)
    assert b.numerical_rank == s.numerical_rank == min(shape)
    assert b.fro_norm == pytest.approx(np.linalg.norm(m), rel=1e-12)
    assert b.effective_rank == pytest.approx(s.effective_rank, rel=1e-10)
    assert b.energy_rank(0.9) == s.energy_rank(0.9)


@pytest.mark.parametrize("shape", [(500, 60), (60, 500)])
def test_blocked_numerical_rank_of_a_low_rank_matrix(shape):
    rng = np.random.default_rng(0)
    m = rng.standard_normal((shape[0], 7)) @ rng.standard_normal((7, shape[1]))
    b = blocked.spectrum_blocked(ArraySource(m), rank_bound=7, budget_bytes=8 * 900)
    assert b.numerical_rank == np.linalg.matrix_rank(m) == 7
    assert np.allclose(b.sigma[:7], np.linalg.svd(m, compute_uv=False)[:7], rtol=1e-10)
    assert np.all(b.sigma[7:] == 0.0) and b.rank_bound == 7


def _pair(shape, intruding, seed):
    """(ΔW, W): W well conditioned; ΔW partly along W's leading directions, and with ``intruding``
    strong directions of its own, which become intruders of W + ΔW in a tall or wide matrix."""
    rng = np.random.default_rng(seed)
    w = _conditioned(*shape, kappa=10.0, seed=seed)
    d = 0.3 * _conditioned(*shape, kappa=5.0, seed=seed + 1) + 0.5 * w
    for _ in range(intruding):
        d += 30.0 * np.outer(rng.standard_normal(shape[0]), rng.standard_normal(shape[1])) / np.sqrt(shape[0] * shape[1])
    return d, w


def _assert_same_alignment(a, b, tol=1e-8):
    assert (a.k, a.intruder_top, a.intruder_count) == (b.k, b.intruder_top, b.intruder_count)
    for field in ("overlap_left", "overlap_right", "intruder_min_cos", "intruder_threshold"):
        assert getattr(b, field) == pytest.approx(getattr(a, field), rel=tol, abs=tol), field


@pytest.mark.parametrize("shape", [(400, 60), (60, 400), (120, 120), (1200, 48)])
@pytest.mark.parametrize("intruding", [0, 2])
def test_blocked_alignment_equals_the_dense_alignment(shape, intruding):
    d, w = _pair(shape, intruding, seed=shape[0] + intruding)
    options = SpectraOptions(top_k=8, intruder_top=10, intruder_threshold=0.6)
    dense = alignment(d, w, options)
    streamed = blocked.alignment_blocked(ArraySource(d), ArraySource(w), budget_bytes=8 * 1500, **alignment_numbers(options))
    _assert_same_alignment(dense, streamed)
    if intruding and shape[0] != shape[1]:  # the test must be able to see intruders at all
        assert streamed.intruder_count >= 1


def test_alignment_from_one_pass_gives_both_spectra_and_the_reference_option():
    d, w = _pair((300, 50), 1, seed=9)
    g = blocked.grams(ArraySource(d), ArraySource(w), budget_bytes=8 * 2000)
    s_d = blocked.spectrum_from_gram(g.delta, g.shape)
    s_w = blocked.spectrum_from_gram(g.base, g.shape)
    assert np.allclose(s_d.sigma, spectrum(d).sigma, rtol=1e-9)
    assert np.allclose(s_w.sigma, spectrum(w).sigma, rtol=1e-9)
    for options in (SpectraOptions(top_k=4, intruder_reference=5, intruder_threshold=0.7),
                    SpectraOptions(top_k=20, intruder_top=3)):
        dense = alignment(d, w, options)
        _assert_same_alignment(dense, blocked.alignment_from_grams(g, s_d.numerical_rank, **alignment_numbers(options)))
    with pytest.raises(ValueError):
        blocked.alignment_from_grams(blocked.grams(ArraySource(d)), **alignment_numbers(SpectraOptions()))


def test_blocked_alignment_of_a_lora_update_streamed_from_its_factors():
    rng = np.random.default_rng(11)
    w = _conditioned(200, 90, kappa=8.0, seed=3)
    f = Factors(rng.standard_normal((200, 4)), rng.standard_normal((4, 90)), 0.25)
    options = SpectraOptions(top_k=8)
    dense = alignment(f, w, options)
    assert dense.k == 4
    streamed = blocked.alignment_blocked(ScaledFactorsSource(f), ArraySource(w), budget_bytes=8 * 700,
                                         **alignment_numbers(options))
    _assert_same_alignment(dense, streamed)


def test_as_source_wraps_arrays_and_factors_and_passes_sources_through():
    rng = np.random.default_rng(12)
    m = rng.standard_normal((6, 9))
    f = Factors(rng.standard_normal((6, 2)), rng.standard_normal((2, 9)), 3.0)
    assert np.array_equal(as_source(m).to_array(), m)
    assert np.allclose(as_source(f).to_array(), f.to_dense(), rtol=1e-14)
    assert np.allclose(as_source((f.B, f.A, 3.0)).to_array(), f.to_dense(), rtol=1e-14)
    g = GaussianSource(6, 9)
    assert as_source(g) is g


@pytest.mark.parametrize("shape", [(32, 128), (128, 32), (96, 384)])
def test_the_row_column_cut_gram_is_shared_with_the_spectra_pass_when_it_is_a_partial_trace(shape):
    """A 32×128 matrix's central cut is 64 wide: its row|column cut Gram (32×32) is a partial trace of
    the central one. The profile remembers it, so the spectra pass over ΔW and W (grams) reads ΔW
    no more than W alone needs, and its σ equal numpy's SVD."""
    rng = np.random.default_rng(sum(shape))
    m, w = rng.standard_normal(shape), rng.standard_normal(shape)
    st = sites(*shape)
    assert st.d_left[schmidt.valley_index(st, shape[0])] == shape[0]
    assert max(min(a, b) for a, b in zip(st.d_left, st.d_right)) > min(shape)  # the central cut is larger
    src = Counting(m)
    blocked.schmidt_spectra_blocked(src, budget_bytes=4096)
    after_profile = src.reads
    g = blocked.grams(src, ArraySource(w), budget_bytes=8192)
    small = m.T @ m if shape[0] > shape[1] else m @ m.T
    assert _rel(g.delta, small) < 1e-12
    reads_with_memo = src.reads - after_profile
    fresh = Counting(m)
    blocked.grams(fresh, ArraySource(w), budget_bytes=8192)
    assert reads_with_memo == fresh.reads  # ΔW's blocks are still read once, for the cross Gram
    s = blocked.spectrum_from_gram(g.delta, shape, eigvals=blocked.small_eigvals(src, g.delta))
    assert _rel(s.sigma, np.linalg.svd(m, compute_uv=False)) < 1e-10
    assert blocked.small_eigvals(src, g.delta) is blocked.small_eigvals(src, g.delta)  # solved once


def test_the_in_memory_profile_leaves_sigma_squared_for_the_spectra_probe():
    """The in-memory path likewise: a 32×128 ΔW's σ² come from the profile's row|column cut (a partial trace)."""
    from lab.kernels.memo import memo_for

    m = np.random.default_rng(7).standard_normal((32, 128))
    schmidt.schmidt_spectra(m, sites(*m.shape))
    w = memo_for(m)["small_eigvals"]
    assert _rel(np.sqrt(np.clip(np.sort(w)[::-1], 0, None)), np.linalg.svd(m, compute_uv=False)) < 1e-10


def test_a_held_difference_gives_the_streamed_results_bit_for_bit(monkeypatch):
    """A DifferenceSource small enough to be held after its first pass: the Grams, ‖ΔW‖_F and the
    spectra pass equal those of the same source streamed on every pass (HOLD_BYTES = 0), bit for bit,
    and a NaN still raises naming the operand it came from."""
    from lab.errors import NonFiniteError
    from lab.kernels import blocked
    from lab.sources import ArraySource, DifferenceSource

    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((96, 40)), rng.standard_normal((96, 40))

    def run(hold: int):
        monkeypatch.setattr(blocked, "HOLD_BYTES", hold)
        src = DifferenceSource(ArraySource(a, "ft"), ArraySource(b, "base"))
        budget = 8 * 40 * 7  # several row and column blocks, uneven last ones
        norm = blocked.fro_norm_blocked(src, budget)
        left = blocked.gram_left(src, 48, budget)
        right = blocked.gram_right(src, 20, budget)
        g = blocked.grams(src, ArraySource(b, "base"), budget)
        return src, [norm, left, right, g.delta, g.base, g.cross]

    src, held = run(1 << 30)
    assert "held" in blocked._memo(src)  # held from the second pass on
    src2, streamed = run(0)
    assert "held" not in blocked._memo(src2)
    assert held[0] == streamed[0]
    for x, y in zip(held[1:], streamed[1:]):
        assert np.array_equal(x, y)
    d = (a - b).reshape(-1)
    assert np.allclose(held[1], d.reshape(48, -1) @ d.reshape(48, -1).T)
    assert np.allclose(held[2], d.reshape(-1, 20).T @ d.reshape(-1, 20))

    bad = b.copy()
    bad[70, 3] = np.nan
    monkeypatch.setattr(blocked, "HOLD_BYTES", 1 << 30)
    src = DifferenceSource(ArraySource(a, "ft"), ArraySource(bad, "base tensor"))
    with pytest.raises(NonFiniteError, match="base tensor"):
        blocked.fro_norm_blocked(src, 8 * 40 * 7)
    with pytest.raises(NonFiniteError, match="base tensor"):
        blocked.gram_left(src, 48, 8 * 40 * 7)


@pytest.mark.parametrize("shape", [(700, 40), (40, 700), (50, 50)])
def test_tuned_grams_equal_the_products_of_w_and_of_w_plus_delta(shape):
    rng = np.random.default_rng(shape[1])
    w, d = rng.standard_normal(shape), rng.standard_normal(shape)
    src_d, src_w = Counting(d), Counting(w)
    g = blocked.tuned_grams(src_d, src_w, budget_bytes=8 * 2 * 9 * min(shape))
    assert src_d.reads == src_w.reads == -(-max(shape) // 9) and g.cross is None
    t = w + d
    small = (lambda m: m.T @ m) if shape[0] > shape[1] else (lambda m: m @ m.T)
    assert _rel(g.delta, small(d)) < 1e-12 and _rel(g.base, small(w)) < 1e-12 and _rel(g.tuned, small(t)) < 1e-12
    with pytest.raises(ShapeError):
        blocked.tuned_grams(ArraySource(np.ones((4, 3))), ArraySource(np.ones((3, 4))))


def _svd_alignment(d, w, top_k, intruder_top, threshold):
    """Overlaps and intruders straight from numpy's SVDs of ΔW, W and W + ΔW (all of W's left vectors)."""
    u_d, s_d, vt_d = np.linalg.svd(d, full_matrices=False)
    u_w, s_w, vt_w = np.linalg.svd(w, full_matrices=False)
    k = min(top_k, int((s_d > s_d[0] * max(d.shape) * np.finfo(float).eps).sum()))
    left = np.linalg.norm(u_d[:, :k].T @ u_w[:, :k]) ** 2 / k
    right = np.linalg.norm(vt_d[:k] @ vt_w[:k].T) ** 2 / k
    y = np.linalg.svd(w + d, full_matrices=False)[0][:, :intruder_top]
    best = np.abs(y.T @ u_w[:, s_w > 0]).max(axis=1)
    return k, left, right, int((best < threshold).sum()), float(best.min())


@pytest.mark.parametrize("shape", [(1300, 520), (520, 1300)])
def test_two_pass_alignment_equals_numpys_svds_where_w_is_solved_partially(shape):
    """Small side ≥ 512: W's leading 64 directions by a partial solve and the certificate (or all of W's
    when it fails), ΔW's top k from the tridiagonal reduction the spectrum's eigenvalues left."""
    d, w = _pair(shape, 2, seed=shape[0])
    src_d = ArraySource(d)
    g = blocked.tuned_grams(src_d, ArraySource(w), budget_bytes=8 * 40000)
    s = blocked.spectrum_from_gram(g.delta, shape, None, blocked.small_eigvals(src_d, g.delta))
    a = blocked.alignment_two_pass(g, src_d, ArraySource(w), s.numerical_rank, budget_bytes=8 * 40000,
                                   top_k=16, intruder_top=10, intruder_threshold=0.6, intruder_reference=None)
    k, left, right, count, min_cos = _svd_alignment(d, w, 16, 10, 0.6)
    assert (a.k, a.intruder_count) == (k, count)
    assert a.overlap_left == pytest.approx(left, abs=1e-9)
    assert a.overlap_right == pytest.approx(right, abs=1e-9)
    assert a.intruder_min_cos == pytest.approx(min_cos, abs=1e-9)
    with pytest.raises(ValueError):
        blocked.alignment_two_pass(blocked.grams(src_d), src_d, ArraySource(w), **alignment_numbers(SpectraOptions()))


def test_a_held_difference_dies_with_its_source(monkeypatch):
    """The held ψ lives in its source's memo: dropping the source (the end of a unit) frees it, so a run over
    many modules holds one module's ΔW at a time (a strong reference from the held copy back to its source kept
    every module's ΔW alive through the memo registry: ~0.5 GB a layer of the 1B pair)."""
    import gc
    import weakref

    from lab.kernels import blocked, memo
    from lab.sources import ArraySource, DifferenceSource

    monkeypatch.setattr(blocked, "HOLD_BYTES", 1 << 30)
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((96, 40)), rng.standard_normal((96, 40))
    src = DifferenceSource(ArraySource(a, "ft"), ArraySource(b, "base"))
    blocked.fro_norm_blocked(src, 8 * 40 * 7)
    blocked.gram_left(src, 48, 8 * 40 * 7)  # the second pass holds ψ
    psi = weakref.ref(blocked._memo(src)["held"].psi)
    key, before = id(src), len(memo._MEMOS)
    del src
    gc.collect()
    assert psi() is None
    assert key not in memo._MEMOS and len(memo._MEMOS) < before
