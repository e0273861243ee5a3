"""Entanglement profiles against quimb's MPS, closed forms and Page's value."""

import math

import numpy as np
import pytest
import quimb.tensor as qtn

from lab.deltas import Delta
from lab.errors import NonFiniteError
from lab.probes.entanglement import away_from_valley, entanglement_profile, summarize
from lab.kernels.factored import Factors
from lab.kernels.tensorize import sites

LN2 = math.log(2.0)


def quimb_profile(m: np.ndarray, dims) -> tuple[np.ndarray, np.ndarray]:
    """(von Neumann, Rényi-2) in nats at every cut, from quimb's exact (cutoff 0) MPS."""
    psi = np.asarray(m, dtype=np.float64).reshape(-1)
    mps = qtn.MatrixProductState.from_dense(psi / np.linalg.norm(psi), list(dims), cutoff=0.0)
    info = {"cur_orthog": (len(dims) - 1, len(dims) - 1)}  # from_dense leaves the norm on the last site
    cuts = range(len(dims) - 1, 0, -1)  # walk the orthogonality centre one site at a time
    schmidt = {k: mps.schmidt_values(k, info=info) for k in cuts}
    vn = [mps.entropy(k, info=info) * LN2 for k in cuts][::-1]  # quimb works in bits
    r2 = [-math.log(float(np.sum(schmidt[k] ** 2))) for k in range(1, len(dims))]
    return np.array(vn), np.array(r2)


def structured(rows: int, cols: int, seed: int) -> np.ndarray:
    """A matrix with a decaying spectrum and smooth structure: far from maximal entropy."""
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    low = sum(2.0 ** -t * np.outer(rng.standard_normal(rows), rng.standard_normal(cols)) for t in range(6))
    return low + np.cos(0.05 * i * j / max(rows, cols) * 7) + 1e-3 * rng.standard_normal((rows, cols))


SHAPES = [(384, 384), (192, 576), (12, 18), (97, 50), (1, 12), (30, 1), (60, 97)]
# quimb's reference costs seconds at 384² (its canonisation), so the structured matrices, whose
# profiles are far from maximal, use smaller shapes with the same kinds of site chains
CASES = [(shape, "gaussian") for shape in SHAPES] + [
    (shape, "structured") for shape in [(96, 96), (48, 144), (12, 18), (97, 50), (1, 12), (30, 1), (60, 97)]]


@pytest.mark.parametrize("shape, kind", CASES)
def test_dense_profile_matches_quimb_at_every_cut(shape, kind):
    rng = np.random.default_rng(sum(shape))
    m = rng.standard_normal(shape) if kind == "gaussian" else structured(*shape, seed=3)
    p = entanglement_profile(m)
    vn, r2 = quimb_profile(m, p.sites.dims)
    assert p.entropy.shape == vn.shape == (p.sites.n_sites - 1,)
    assert np.allclose(p.entropy, vn, atol=1e-6)
    assert np.allclose(p.renyi2, r2, atol=1e-6)
    assert np.allclose(p.max_entropy, np.log(np.minimum(p.d_left, p.d_right)))
    assert np.all(p.entropy <= p.max_entropy + 1e-9)


def test_float32_input_is_accumulated_in_float64():
    m = structured(96, 80, seed=1).astype(np.float32)
    vn, _ = quimb_profile(m.astype(np.float64), sites(96, 80).dims)
    assert np.allclose(entanglement_profile(m).entropy, vn, atol=1e-9)


@pytest.mark.parametrize("shape", [(384, 384), (96, 60), (12, 18)])
def test_product_state_has_zero_entropy_at_every_cut(shape):
    rng = np.random.default_rng(0)
    psi = np.ones(1)
    for d in sites(*shape).dims:
        psi = np.kron(psi, rng.standard_normal(d))
    p = entanglement_profile(psi.reshape(shape))
    assert np.allclose(p.entropy, 0.0, atol=1e-9)
    assert np.allclose(p.renyi2, 0.0, atol=1e-9)


@pytest.mark.parametrize("shape, r", [((384, 384), 16), ((192, 576), 7), ((12, 18), 5), ((97, 50), 3)])
def test_rank_r_with_equal_singular_values_has_ln_r_at_the_row_column_cut(shape, r):
    rng = np.random.default_rng(r)
    u, _ = np.linalg.qr(rng.standard_normal((shape[0], r)))
    v, _ = np.linalg.qr(rng.standard_normal((shape[1], r)))
    dense = 2.5 * u @ v.T
    for x in (dense, Factors(u, v.T, 2.5), Factors(u * 3.0, v.T / 3.0, -2.5)):
        p = entanglement_profile(x)
        k = p.sites.row_sites
        assert p.entropy[k - 1] == pytest.approx(math.log(r), abs=1e-10)
        assert p.renyi2[k - 1] == pytest.approx(math.log(r), abs=1e-10)


@pytest.fixture(scope="module")
def gaussian_profiles():
    rng = np.random.default_rng(2024)
    return {shape: entanglement_profile(rng.standard_normal(shape, dtype=np.float32))
            for shape in [(1024, 1024), (2048, 2048), (1536, 1024)]}


@pytest.mark.parametrize("shape", [(1024, 1024), (2048, 2048), (1536, 1024)])
def test_gaussian_matrices_sit_within_one_percent_of_page_at_every_cut(gaussian_profiles, shape):
    p = gaussian_profiles[shape]
    assert np.all(np.abs(p.entropy / p.page_entropy - 1.0) < 0.01)


@pytest.mark.parametrize("shape, r, scale", [((384, 384), 16, 0.37), ((192, 576), 8, -2.0), ((12, 18), 20, 1.0),
                                             ((97, 50), 4, 0.5), ((1, 12), 3, 1.0), ((64, 1), 2, 3.0)])
def test_factored_path_agrees_with_the_dense_matrix(shape, r, scale):
    rng = np.random.default_rng(r)
    B, A = rng.standard_normal((shape[0], r)), rng.standard_normal((r, shape[1]))
    pf = entanglement_profile(Factors(B, A, scale))
    pd_ = entanglement_profile(scale * B @ A)
    assert np.allclose(pf.entropy, pd_.entropy, atol=1e-9)
    assert np.allclose(pf.renyi2, pd_.renyi2, atol=1e-9)
    if shape[0] * shape[1] <= 20_000:  # the large ones are covered through the dense path above
        vn, _ = quimb_profile(scale * B @ A, pf.sites.dims)
        assert np.allclose(pf.entropy, vn, atol=1e-6)


def test_factored_path_with_singular_factor_grams():
    # A·Aᵀ and Bᵀ·B singular: repeated rows of A and columns of B (a rank-3 update stored at r = 6)
    rng = np.random.default_rng(5)
    B = rng.standard_normal((96, 3))
    A = rng.standard_normal((3, 120))
    B6, A6 = np.hstack([B, B]), np.vstack([A, A])
    pf = entanglement_profile(Factors(B6, A6, 0.25))
    vn, _ = quimb_profile(0.25 * B6 @ A6, pf.sites.dims)
    assert np.allclose(pf.entropy, vn, atol=1e-6)


def test_delta_objects_dense_and_factored():
    rng = np.random.default_rng(9)
    B, A = rng.standard_normal((48, 4)), rng.standard_normal((4, 32))
    lora = Delta("m", 0, "q", "lora", Factors(B, A, 2.0))
    full = Delta("m", 0, "q", "full", lora.to_dense())
    assert np.allclose(entanglement_profile(lora).entropy, entanglement_profile(full).entropy, atol=1e-10)


def test_rank_bound_caps_exactly_the_cuts_that_are_not_away_from_the_valley():
    # generic rank-r factors: the Schmidt rank at a cut is min(D_left, D_right) exactly at the cuts
    # counted as "away" (numpy's matrix_rank of the reshaped dense matrix as the independent count)
    rng = np.random.default_rng(11)
    for (rows, cols), r in [((96, 96), 4), ((64, 48), 2), ((36, 100), 5)]:
        dense = rng.standard_normal((rows, r)) @ rng.standard_normal((r, cols))
        p = entanglement_profile(dense)
        away = away_from_valley(p, r)
        for i, k in enumerate(p.cuts):
            full_rank = np.linalg.matrix_rank(dense.reshape(int(p.d_left[i]), -1)) == min(p.d_left[i], p.d_right[i])
            if k != p.sites.row_sites:
                assert away[i] == full_rank
        assert not away[p.sites.row_sites - 1]


def test_summary_against_the_profile():
    rng = np.random.default_rng(1)
    B, A = rng.standard_normal((384, 8)), rng.standard_normal((8, 384))
    p = entanglement_profile(Factors(B, A, 1.0))
    s = summarize(p, 8)
    v = p.sites.row_sites
    assert s.valley_cut == v == 8
    assert s.valley_entropy <= math.log(8) + 1e-12
    assert s.valley_depth == pytest.approx(p.page_entropy[v - 1] - p.entropy[v - 1])
    assert s.page_ratio_mean == pytest.approx(np.mean(p.entropy / p.page_entropy))
    away = away_from_valley(p, 8)
    design = np.column_stack([np.ones(away.sum()), p.max_entropy[away]])
    (a, b), *_ = np.linalg.lstsq(design, p.entropy[away], rcond=None)
    assert (s.volume_intercept, s.volume_slope) == (pytest.approx(a), pytest.approx(b))
    assert s.volume_cuts == away.sum() > 2


def test_summary_of_a_dense_gaussian_follows_page():
    p = entanglement_profile(np.random.default_rng(0).standard_normal((384, 384)))
    s = summarize(p)
    assert s.volume_cuts == p.sites.n_sites - 2  # every cut but the valley
    assert s.volume_slope == pytest.approx(s.page_slope, abs=0.02)
    assert abs(s.valley_depth) < 0.01


def test_prime_and_trivial_shapes():
    p = entanglement_profile(np.random.default_rng(0).standard_normal((97, 89)))
    assert p.sites.dims == (97, 89) and p.d_left.tolist() == [97]
    assert entanglement_profile(np.ones((1, 1))).entropy.size == 0
    assert entanglement_profile(np.ones((1, 7))).entropy.size == 0


def test_zero_matrix_gives_nan_and_nonfinite_raises():
    p = entanglement_profile(np.zeros((12, 18)))
    assert np.all(np.isnan(p.entropy)) and np.all(np.isfinite(p.page_entropy))
    assert np.all(np.isnan(entanglement_profile(Factors(np.zeros((12, 2)), np.ones((2, 18)))).entropy))
    bad = np.ones((12, 18))
    bad[3, 4] = np.nan
    with pytest.raises(NonFiniteError, match="NaN or inf"):
        entanglement_profile(bad)
    with pytest.raises(NonFiniteError):
        entanglement_profile(Factors(np.ones((12, 2)), np.full((2, 18), np.inf)))
