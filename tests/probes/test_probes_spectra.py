"""Spectra against numpy's SVD of the dense matrix, and alignment against scipy's principal angles."""

import math

import numpy as np
import pytest
import scipy.linalg

from lab.errors import NonFiniteError
from lab.probes.entanglement import entanglement_profile
from lab.kernels.factored import Factors
from lab.probes.spectra import SpectraOptions, alignment, alignment_numbers, singular_value_rows, spectrum
from lab.kernels.subspaces import intruders, subspace_overlap, top_singular_vectors


def _entropy(p):
    p = p[p > 0]
    return -float(np.sum(p * np.log(p)))


def _energy_rank(s, q):
    """The first k whose leading energy reaches q, by a plain loop over numpy's σ."""
    total, acc = float(np.sum(s**2)), 0.0
    for k, v in enumerate(s, start=1):
        acc += v * v
        if acc >= q * total:
            return k
    return len(s)


def _cases():
    rng = np.random.default_rng(7)
    u, _ = np.linalg.qr(rng.standard_normal((120, 40)))
    v, _ = np.linalg.qr(rng.standard_normal((90, 40)))
    decaying = u @ np.diag(0.8 ** np.arange(40)) @ v.T  # rank 40, σ spanning 1 … 1e-4
    B, A = rng.standard_normal((64, 5)), rng.standard_normal((5, 80))
    return {
        "gaussian": rng.standard_normal((96, 160)),
        "tall": rng.standard_normal((200, 30)),
        "decaying": decaying,
        "rank5_dense": B @ A,
        "lora": Factors(B, A, 0.7),
        "lora_r_above_dims": Factors(rng.standard_normal((12, 20)), rng.standard_normal((20, 18)), 2.0),
        "lora_deficient": Factors(np.hstack([B, B]), np.vstack([A, -A / 2]), 1.5),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_spectrum_numbers_against_numpy_svd(name):
    x = _cases()[name]
    dense = x.to_dense() if isinstance(x, Factors) else x
    s_np = np.linalg.svd(dense, compute_uv=False)
    s = spectrum(x)
    n = s.sigma.size
    assert np.allclose(s.sigma, s_np[:n], rtol=1e-8, atol=1e-12 * s_np[0])  # see linalg.dense_singular_values
    assert np.all(s_np[n:] <= 1e-12 * s_np[0])  # a factored spectrum omits only zeros
    assert s.fro_norm == pytest.approx(np.linalg.norm(dense, "fro"), rel=1e-12)
    assert s.spectral_norm == pytest.approx(np.linalg.norm(dense, 2), rel=1e-12)
    assert s.stable_rank == pytest.approx(np.linalg.norm(dense, "fro") ** 2 / np.linalg.norm(dense, 2) ** 2, rel=1e-10)
    assert s.numerical_rank == np.linalg.matrix_rank(dense)
    keep = s_np[s_np > 1e-12 * s_np[0]]  # zeros do not change the entropies
    assert s.effective_rank == pytest.approx(math.exp(_entropy(keep / keep.sum())), rel=1e-9)
    assert s.entropy_rank == pytest.approx(math.exp(_entropy(keep**2 / np.sum(keep**2))), rel=1e-9)
    assert s.energy_rank(0.90) == _energy_rank(s_np, 0.90)
    assert s.energy_rank(0.99) == _energy_rank(s_np, 0.99)
    assert s.utilization == pytest.approx(s.effective_rank / s.rank_bound)
    assert s.stable_rank <= s.effective_rank + 1e-9  # and both below the rank
    assert s.effective_rank <= s.numerical_rank + 1e-9


@pytest.mark.parametrize("kappa", [3.0, 1e2, 1e6, 1e12])
@pytest.mark.parametrize("shape", [(600, 40), (40, 600), (50, 50)])
def test_dense_singular_values_keep_their_accuracy_at_any_conditioning(shape, kappa):
    # the Gram route is taken only when every σ keeps ~1e-8 relative accuracy; else an SVD
    rng = np.random.default_rng(int(np.log10(kappa)))
    n = min(shape)
    u, _ = np.linalg.qr(rng.standard_normal((shape[0], n)))
    v, _ = np.linalg.qr(rng.standard_normal((shape[1], n)))
    sigma = np.geomspace(1.0, 1.0 / kappa, n)
    m = u @ np.diag(sigma) @ v.T
    s_np = np.linalg.svd(m, compute_uv=False)
    s = spectrum(m)
    # relative to 1e-7 down to the smallest σ, or to an SVD's own accuracy ~ε·σ₁ where it is coarser
    assert np.allclose(s.sigma, s_np, rtol=1e-7, atol=100 * np.finfo(float).eps * s_np[0])
    assert s.numerical_rank == np.linalg.matrix_rank(m)


def test_entropy_rank_is_exp_of_the_row_column_entanglement():
    for x in (_cases()["gaussian"], _cases()["lora"]):
        p = entanglement_profile(x)
        assert spectrum(x).entropy_rank == pytest.approx(math.exp(p.entropy[p.sites.row_sites - 1]), rel=1e-9)


def test_rank_bounds_and_zero_and_nonfinite():
    assert spectrum(_cases()["lora"]).rank_bound == 5
    assert spectrum(_cases()["tall"]).rank_bound == 30
    z = spectrum(np.zeros((8, 6)))
    assert (z.fro_norm, z.spectral_norm, z.numerical_rank, z.energy_rank(0.9)) == (0.0, 0.0, 0, 0)
    assert math.isnan(z.stable_rank) and math.isnan(z.effective_rank)
    with pytest.raises(NonFiniteError):
        spectrum(np.full((3, 3), np.inf))


def test_singular_value_rows_carry_energy_fractions():
    s = spectrum(_cases()["decaying"])
    rows = singular_value_rows(s, "delta")
    assert [r["index"] for r in rows] == list(range(1, 91))  # all min(rows, cols), zeros included
    assert np.allclose([r["energy_fraction"] for r in rows], s.sigma**2 / np.sum(s.sigma**2))
    assert rows[-1]["cumulative_energy"] == pytest.approx(1.0)


# ---- subspaces ----------------------------------------------------------------------------------

def _mean_cos2(a, b):
    return float(np.mean(np.cos(scipy.linalg.subspace_angles(a, b)) ** 2))


@pytest.mark.parametrize("name", ["gaussian", "tall", "decaying", "lora"])
def test_top_singular_vectors_span_numpys(name):
    x = _cases()[name]
    dense = x.to_dense() if isinstance(x, Factors) else x
    u_np, s_np, vt_np = np.linalg.svd(dense, full_matrices=False)
    u, s, v = top_singular_vectors(x, 4)
    assert np.allclose(s, s_np[:4], rtol=1e-8)
    assert np.allclose(u.T @ u, np.eye(4), atol=1e-8) and np.allclose(v.T @ v, np.eye(4), atol=1e-8)
    assert np.max(scipy.linalg.subspace_angles(u, u_np[:, :4])) < 1e-6
    assert np.max(scipy.linalg.subspace_angles(v, vt_np[:4].T)) < 1e-6


def test_subspace_overlap_against_scipy_principal_angles():
    rng = np.random.default_rng(3)
    a, _ = np.linalg.qr(rng.standard_normal((50, 6)))
    b, _ = np.linalg.qr(a[:, :3] @ rng.standard_normal((3, 6)) + 0.3 * rng.standard_normal((50, 6)))
    assert subspace_overlap(a, b) == pytest.approx(_mean_cos2(a, b), abs=1e-12)
    assert subspace_overlap(a, a) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def tuned_pair():
    """A base W with a decaying spectrum, a LoRA-like update and a full-fine-tune-like one."""
    rng = np.random.default_rng(42)
    n, m = 64, 80
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((m, n)))
    W = u @ np.diag(np.linspace(3.0, 0.1, n)) @ v.T
    lora = Factors(rng.standard_normal((n, 2)), rng.standard_normal((2, m)), 1.0)  # new large directions
    small = 1e-3 * rng.standard_normal((n, m))  # a gentle full update
    return W, lora, small


def test_alignment_overlaps_against_scipy_on_dense_matrices(tuned_pair):
    W, lora, small = tuned_pair
    for delta in (lora, small):
        dense = delta.to_dense() if isinstance(delta, Factors) else delta
        al = alignment(delta, W, SpectraOptions(top_k=4))
        k = min(4, np.linalg.matrix_rank(dense))
        assert al.k == k
        ud, _, vdt = np.linalg.svd(dense, full_matrices=False)
        uw, _, vwt = np.linalg.svd(W, full_matrices=False)
        assert al.overlap_left == pytest.approx(_mean_cos2(ud[:, :k], uw[:, :k]), abs=1e-8)
        assert al.overlap_right == pytest.approx(_mean_cos2(vdt[:k].T, vwt[:k].T), abs=1e-8)


def _intruders_by_numpy(W, tuned, top, eps):
    u_w = np.linalg.svd(W, full_matrices=False)[0]
    u_t = np.linalg.svd(tuned, full_matrices=False)[0][:, :top]
    best = np.abs(u_t.T @ u_w).max(axis=1)
    return int(np.sum(best < eps)), float(best.min())


def test_intruders_against_numpy_and_what_they_mean(tuned_pair):
    W, lora, small = tuned_pair
    big = Factors(lora.B, lora.A, 5.0)  # two directions larger than all of W's
    u_w_numpy = np.linalg.svd(W, full_matrices=False)[0]
    counts = {}
    for name, delta in {"lora": big, "small": small}.items():
        tuned = W + (delta.to_dense() if isinstance(delta, Factors) else delta)
        ref_count, ref_min = _intruders_by_numpy(W, tuned, 10, 0.5)
        count, min_cos = intruders(u_w_numpy, tuned, top=10, threshold=0.5)
        assert (count, min_cos) == (ref_count, pytest.approx(ref_min, abs=1e-6))
        al = alignment(delta, W, SpectraOptions(intruder_top=10, intruder_threshold=0.5))
        assert (al.intruder_count, al.intruder_min_cos) == (ref_count, pytest.approx(ref_min, abs=1e-6))
        counts[name] = count
    assert counts["small"] == 0 and counts["lora"] >= 1
    # W's own leading vectors are never intruders; with W's top-10 only as the reference a
    # limited comparison can only find more intruders, never fewer
    assert intruders(u_w_numpy[:, :10], W, top=10, threshold=0.5)[0] == 0
    limited = alignment(big, W, SpectraOptions(intruder_reference=10)).intruder_count
    assert limited >= counts["lora"]


def _brute_intruders(W, tuned, top=10, threshold=0.5):
    """numpy's full SVDs: every left singular vector of W against the top ones of W + ΔW."""
    u_w = np.linalg.svd(W)[0]
    y = np.linalg.svd(tuned)[0][:, :top]
    best = np.abs(y.T @ u_w).max(axis=1)
    return int((best < threshold).sum()), float(best.min())


@pytest.mark.parametrize("case", ["small_update", "intruding_rank_one"])
@pytest.mark.parametrize("path", ["memory", "streamed"])
def test_intruders_from_w_leading_vectors_equal_the_full_decomposition(case, path, monkeypatch):
    """512×512 (wide enough that W's leading 64 vectors are solved alone): a small update's intruder
    max-cosines are certified by the leading vectors; a large rank-1 update along a random direction
    (spread over all of W's vectors) makes an intruder the leading vectors cannot decide, and all of W's are used. Both
    equal numpy's full SVDs, in memory and from the streamed Grams. Counting the full decompositions
    of W shows which way each case went."""
    from lab.kernels import blocked, linalg, subspaces
    from lab.sources import ArraySource

    rng = np.random.default_rng(11)
    n = 512
    W = rng.standard_normal((n, n)) / np.sqrt(n)
    if case == "small_update":
        delta = 1e-3 * rng.standard_normal((n, n)) / np.sqrt(n)
    else:
        z, w = rng.standard_normal(n), rng.standard_normal(n)
        delta = 6.0 * np.outer(z / np.linalg.norm(z), w / np.linalg.norm(w))  # a random direction, made the largest
    full = []
    eigh = linalg.psd_eigh
    monkeypatch.setattr(linalg, "psd_eigh", lambda g: full.append(g.shape[0]) or eigh(g))
    options = SpectraOptions()
    if path == "memory":
        got = alignment(delta, W, options)
    else:
        got = blocked.alignment_blocked(ArraySource(delta), ArraySource(W), budget_bytes=1 << 20, **alignment_numbers(options))
    want = _brute_intruders(W, W + delta)
    assert got.intruder_count == want[0]
    assert got.intruder_min_cos == pytest.approx(want[1], abs=1e-9)
    decomposed_w_fully = n in full
    assert decomposed_w_fully == (case == "intruding_rank_one"), full
    assert (want[0] > 0) == (case == "intruding_rank_one")


def test_the_certificate_is_the_bound_on_the_unseen_vectors():
    from lab.kernels.subspaces import certified_max_cosines

    assert certified_max_cosines(np.array([[0.9, 0.1]])) is not None  # 0.9 ≥ √(1 − 0.82) = 0.42
    assert certified_max_cosines(np.array([[0.4, 0.3]])) is None  # 0.4 < √(1 − 0.25) = 0.87: an unseen one may be larger
    assert certified_max_cosines(np.zeros((1, 0))) is None


@pytest.mark.parametrize("rank", [None, 3])  # full rank: the solves made for k = top_k stand; rank 3 < top_k: made again
def test_side_by_side_rows_equal_the_sequential_route_and_numpy(rank, monkeypatch):
    """A dense ΔW and W with both sides ≥ LANCZOS_FROM: ΔW's singular values and the alignment's solves run on
    two lanes (lab.kernels.linalg.in_lanes). The rows equal those of the sequential route bit for bit, and the
    overlaps and σ equal numpy's SVDs."""
    from lab.probes import spectra as spectra_probe

    rng = np.random.default_rng(21)
    rows, cols = 600, 540
    W = rng.standard_normal((rows, cols)) / np.sqrt(cols)
    delta = 1e-2 * rng.standard_normal((rows, cols)) / np.sqrt(cols)
    if rank is not None:
        delta = 1e-2 * rng.standard_normal((rows, rank)) @ rng.standard_normal((rank, cols)) / cols
    options = SpectraOptions()
    calls = []
    side = spectra_probe._side_by_side
    monkeypatch.setattr(spectra_probe, "_side_by_side", lambda *a: calls.append(1) or side(*a))
    lanes = spectra_probe.analyze_matrix(delta.copy(), "delta", min(rows, cols), W.copy(), options)
    assert calls and lanes is not None
    monkeypatch.setattr(spectra_probe, "_side_by_side", lambda *a: None)
    sequential = spectra_probe.analyze_matrix(delta.copy(), "delta", min(rows, cols), W.copy(), options)
    assert lanes == sequential  # every float the same bits (NaN-free rows)
    row = lanes["spectra"][0]
    k = min(options.top_k, np.linalg.matrix_rank(delta))
    assert row["overlap_k"] == k
    u_d, s_d, vt_d = np.linalg.svd(delta, full_matrices=False)
    u_w, _, vt_w = np.linalg.svd(W, full_matrices=False)
    assert row["overlap_left"] == pytest.approx(subspace_overlap(u_d[:, :k], u_w[:, :k]), abs=1e-9)
    assert row["overlap_right"] == pytest.approx(subspace_overlap(vt_d[:k].T, vt_w[:k].T), abs=1e-9)
    assert row["spectral_norm"] == pytest.approx(s_d[0], rel=1e-12)
    want = _brute_intruders(W, W + delta)
    assert (row["intruder_count"], row["intruder_min_cos"]) == (want[0], pytest.approx(want[1], abs=1e-9))
