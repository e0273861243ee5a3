"""A Kronecker-product update s·kron(W1, W2) (LoKr): the representation, and every probe's rows from
the structure equal to the same probe on the multiplied-out matrix (numpy's kron, SVD and lab's
dense profile, itself checked against quimb; one case against quimb directly)."""

import math

import numpy as np
import pytest
import quimb.tensor as qtn

from lab.deltas import Delta, Factors, Kron
from lab.probes import entanglement, inventory, spectra
from lab.kernels import kron
from lab.probes.entanglement import entanglement_profile
from lab.kernels.tensorize import sites


def factor(rng, shape, r=None, scale=1.0):
    """A dense factor, or Factors of rank r."""
    if r is None:
        return rng.standard_normal(shape)
    return Factors(rng.standard_normal((shape[0], r)), rng.standard_normal((r, shape[1])), scale)


def dense(w) -> np.ndarray:
    return w.to_dense() if isinstance(w, Factors) else w


# (W1 shape, W1 rank or None for dense), (W2 shape, rank), aligned with the chain?
CASES = [
    (((16, 4), None), ((24, 6), 3), True),  # 384×24: 2⁴ | 2³·3 on the rows
    (((4, 8), 2), ((8, 4), None), True),  # decompose_both: both factored
    (((4, 4), 2), ((6, 12), 3), True),
    (((2, 6), None), ((6, 5), None), True),
    (((1, 1), None), ((12, 18), None), True),  # LoKr's split of a prime: W1 is a scalar
    (((4, 1), None), ((6, 9), 2), True),
    (((6, 8), None), ((8, 6), 2), False),  # 48 = 6·8: 2·3 | 2·2·2, the chain is 2,2,2,2,3
    (((3, 2), None), ((128, 4), 2), False),  # 3 | 2⁷
    (((2, 3), 1), ((4, 4), None), False),  # the columns 3 | 2·2 do not align
]


def make(rng, case, scale=0.7):
    (s1, r1), (s2, r2), _ = case
    return Kron(factor(rng, s1, r1), factor(rng, s2, r2), scale)


@pytest.mark.parametrize("case", CASES)
def test_representation_matches_the_dense_kronecker_product(case):
    rng = np.random.default_rng(1)
    k = make(rng, case)
    m = 0.7 * np.kron(dense(k.W1), dense(k.W2))
    np.testing.assert_allclose(k.to_dense(), m, rtol=0, atol=1e-13)
    assert k.shape == m.shape
    # generic factors have the structural rank: rank(W1)·rank(W2)
    assert k.rank_bound == np.linalg.matrix_rank(dense(k.W1)) * np.linalg.matrix_rank(dense(k.W2))
    assert k.rank_bound == np.linalg.matrix_rank(m)
    assert k.fro_norm() == pytest.approx(np.linalg.norm(m), rel=1e-12)
    assert k.is_finite()
    d = Delta(module="m", layer=0, role="q", kind="lokr", matrix=k)
    assert d.kron is k and d.dense is None and d.factors is None and d.is_factored and not d.streamed
    assert d.shape == m.shape and d.rank_bound == k.rank_bound and d.scale == 0.7
    assert d.fro_norm() == pytest.approx(np.linalg.norm(m), rel=1e-12)
    np.testing.assert_array_equal(d.to_dense(), k.to_dense())
    row = inventory.delta_row(d)  # the deltas row of a Kron built in memory: its factors' numbers
    stored = sum(w.B.size + w.A.size if isinstance(w, Factors) else w.size for w in (k.W1, k.W2))
    assert row["params"] == stored and row["factored"] and row["rank_bound"] == k.rank_bound
    assert row["fro_norm"] == pytest.approx(np.linalg.norm(m), rel=1e-12) and row["scale"] == 0.7


def test_rank_bound_is_structural_and_capped_by_each_factors_shape():
    rng = np.random.default_rng(2)
    # W1 = 4×64 decomposed with r = 8 > 4 (PEFT decomposes whenever r < max(a, b)/2): rank ≤ 4
    k = Kron(factor(rng, (4, 64), 8), np.zeros((3, 2)))
    assert k.rank_bound == 4 * 2
    assert Delta(module="m", layer=0, role="q", kind="lokr", matrix=k).rank_bound == 8


def test_rows_aligned_with_w2_blocks_stay_kronecker_and_others_are_dense():
    rng = np.random.default_rng(3)
    for w1 in (factor(rng, (6, 4), 2), factor(rng, (6, 4))):
        k = Kron(w1, factor(rng, (4, 5), 2), -1.5)
        m = k.to_dense()
        part = k.rows(8, 16)  # W2 has 4 rows: rows 8:16 are W1's rows 2:4
        assert isinstance(part, Kron) and part.shape == (8, 20)
        np.testing.assert_allclose(part.to_dense(), m[8:16], atol=1e-13)
        off = k.rows(6, 14)
        assert isinstance(off, np.ndarray)
        np.testing.assert_array_equal(off, m[6:14])


def test_nonfinite_and_overflowing_norms():
    k = Kron(np.array([[np.nan, 1.0]]), np.ones((2, 2)))
    assert not k.is_finite() and math.isnan(k.fro_norm())
    assert not Kron(np.ones((2, 2)), np.ones((2, 2)), float("inf")).is_finite()
    big = Kron(np.full((2, 2), 1e200), np.full((2, 2), 1e-250), 1e60)  # the norm is representable
    assert big.fro_norm() == pytest.approx(4e10, rel=1e-12)
    assert Kron(np.full((2, 2), 1e200), np.full((2, 2), 1e200)).fro_norm() == math.inf
    assert Kron(np.zeros((2, 2)), np.ones((2, 2))).fro_norm() == 0.0


@pytest.mark.parametrize("case", CASES)
def test_singular_values_are_the_products_of_the_factors(case):
    k = make(np.random.default_rng(4), case)
    m = k.to_dense()
    want = np.linalg.svd(m, compute_uv=False)
    got = spectra.singular_values(k)
    assert got.size == k.rank_bound
    np.testing.assert_allclose(got, want[: got.size], rtol=1e-10, atol=1e-12 * want[0])
    assert np.all(want[got.size :] < 1e-10 * want[0])  # the rest are zeros of the dense matrix
    s, t = spectra.spectrum(k), spectra.spectrum(m, k.rank_bound)
    for name in ("fro_norm", "spectral_norm", "stable_rank", "effective_rank", "entropy_rank", "numerical_rank",
                 "utilization"):
        assert getattr(s, name) == pytest.approx(getattr(t, name), rel=1e-10), name
    assert s.energy_rank(0.9) == t.energy_rank(0.9) and s.rank_bound == k.rank_bound


def test_alignment_with_a_base_equals_the_dense_update():
    rng = np.random.default_rng(5)
    k = Kron(factor(rng, (4, 4), 2), factor(rng, (6, 8)), 0.3)
    W = rng.standard_normal(k.shape)
    options = spectra.SpectraOptions(top_k=4, intruder_top=5)
    got = spectra.analyze_matrix(k, "delta", k.rank_bound, W, options)
    want = spectra.analyze_matrix(k.to_dense(), "delta", k.rank_bound, W, options)
    for key, value in want["spectra"][0].items():
        if isinstance(value, float):
            assert got["spectra"][0][key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
        else:
            assert got["spectra"][0][key] == value, key


@pytest.mark.parametrize("case", CASES)
def test_profile_from_the_factors_equals_the_dense_profile(case, monkeypatch):
    k = make(np.random.default_rng(6), case)
    m = k.to_dense()
    assert kron.aligned(k) == case[2]
    want = entanglement_profile(m)
    if case[2]:  # aligned: the profile must come from the two factors, never the product
        monkeypatch.setattr(Kron, "to_dense", lambda self: pytest.fail("multiplied out an aligned Kron"))
    got = entanglement_profile(k)
    assert got.sites == want.sites
    np.testing.assert_allclose(got.entropy, want.entropy, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.renyi2, want.renyi2, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(got.page_entropy, want.page_entropy)


def test_induced_cuts_walk_w1_then_w2_on_each_side():
    # W1 2·2 | 3 (p = 2, q = 1), W2 2·3 | 5 (2 row sites, 1 col site): R = 4, 6 sites in all
    got = [kron.induced_cuts(c, p=2, q=1, row_sites=4) for c in range(0, 7)]
    assert got == [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2), (3, 2), (3, 3)]
    k = Kron(np.ones((4, 3)), np.ones((6, 5)))
    assert kron.interleaved_sites(k).dims == (2, 2, 2, 3, 3, 5) and kron.aligned(k)
    assert not kron.aligned(Kron(np.ones((3, 1)), np.ones((128, 1))))  # 3 | 2⁷
    assert kron.aligned(Kron(np.ones((16, 1)), np.ones((24, 1))))  # 384 = 16·24


def test_rank_one_factor_adds_nothing_at_the_valley():
    """W1 = u·vᵀ: the row|column cut carries W2's valley entropy alone, and every cut inside W1's
    rows carries only what u's own chain holds."""
    rng = np.random.default_rng(7)
    w1 = Factors(rng.standard_normal((8, 1)), rng.standard_normal((1, 4)), 1.0)
    w2 = rng.standard_normal((6, 6))
    k = Kron(w1, w2, 2.0)
    got, want = entanglement_profile(k), entanglement_profile(k.to_dense())
    np.testing.assert_allclose(got.entropy, want.entropy, atol=1e-10)
    valley = got.sites.valley_cut
    assert got.entropy[valley - 1] == pytest.approx(entanglement_profile(w2).entropy[sites(6, 6).valley_cut - 1], abs=1e-10)
    assert spectra.spectrum(k).numerical_rank == 6


def test_zero_factor_gives_nan_like_a_zero_matrix():
    rng = np.random.default_rng(8)
    for k in (Kron(np.zeros((4, 4)), rng.standard_normal((8, 8))),  # PEFT's initial LoKr: W1 = 0
              Kron(Factors(np.zeros((4, 2)), rng.standard_normal((2, 4))), rng.standard_normal((8, 8))),
              Kron(np.zeros((1, 1)), rng.standard_normal((8, 8))),
              Kron(rng.standard_normal((4, 4)), rng.standard_normal((8, 8)), 0.0)):
        assert np.isnan(entanglement_profile(k).entropy).all()
        assert np.isnan(entanglement_profile(k.to_dense()).entropy).all()


def test_profile_matches_quimb():
    rng = np.random.default_rng(9)
    k = Kron(factor(rng, (4, 6), 2), factor(rng, (6, 4)), 0.5)  # 24×24: 2·2·2·3 | 2·2·2·3
    p = entanglement_profile(k)
    psi = k.to_dense().reshape(-1)
    mps = qtn.MatrixProductState.from_dense(psi / np.linalg.norm(psi), list(p.sites.dims), cutoff=0.0)
    n = p.sites.n_sites
    info = {"cur_orthog": (n - 1, n - 1)}
    vn = [mps.entropy(c, info=info) * math.log(2.0) for c in range(n - 1, 0, -1)][::-1]
    np.testing.assert_allclose(p.entropy, vn, atol=1e-10)


def test_rows_written_for_a_kron_delta_equal_the_dense_ones():
    rng = np.random.default_rng(10)
    k = Kron(factor(rng, (4, 4), 2), factor(rng, (8, 8), 3), 1.25)
    d = Delta(module="m", layer=0, role="q", kind="lokr", matrix=k)
    got = entanglement.analyze_matrix(d.matrix, "delta", d.rank_bound)
    want = entanglement.analyze_matrix(k.to_dense(), "delta", d.rank_bound)
    for table in want:
        assert len(got[table]) == len(want[table])
        for g, w in zip(got[table], want[table]):
            assert g.keys() == w.keys()
            for key, value in w.items():
                assert g[key] == (pytest.approx(value, abs=1e-10) if isinstance(value, float) else value), key


def test_msu_pairs_and_msu_say_a_kron_has_no_units():
    """LoKr is not s·B·A: the group probe labels the member 'kron' and fills no unit measure, the
    module probe writes no units (never a number computed as if it were LoRA)."""
    from lab.engine.subjects import GroupSubject
    from lab.probes import msu, msu_pairs
    from lab.probes.registry import ProbeContext

    rng = np.random.default_rng(11)
    lora = Delta(module="m", layer=0, role="q", kind="lora", matrix=factor(rng, (8, 8), 2, 0.5))
    lokr = Delta(module="m", layer=0, role="q", kind="lokr", matrix=Kron(factor(rng, (2, 2)), factor(rng, (4, 4), 1)))
    ctx = ProbeContext(seed=0)
    row = msu_pairs._run(GroupSubject("m", ["a", "b"], [None, None], [lora, lokr]), msu_pairs.MsuPairsOptions(), ctx)
    (row,) = row["msu_pairs"]
    assert row["ranks"] == "2,kron" and "Kronecker" in row["note"] and row["mean_fro_norm"] is None
    assert msu._run(lokr, msu.MsuOptions(), ctx) == {"msu": [], "msu_units": [], "msu_similarity": []}
