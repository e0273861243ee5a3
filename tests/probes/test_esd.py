"""The esd probe against a direct Clauset fit written here, numpy's SVD and scipy's Jensen–Shannon distance.

The reference fit follows Clauset, Shalizi & Newman 2009 literally: for each candidate xmin the tail
{x ≥ xmin}, α = 1 + n / Σ ln(x / xmin), the Pareto CDF from scipy.stats, and D with WeightWatcher's
empirical CDF i/n (WWFit's ``np.arange(n) / n``); the smallest D wins.
"""

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats
from safetensors.numpy import load_file

from lab.deltas import Delta, Factors
from lab.finetune.models import minilm_path
from lab.probes import available
from lab.probes.esd import ESDOptions, eigenvalues, esd_metrics
from lab.probes.powerlaw import EVALS_THRESH, fit_power_law
from lab.probes.registry import ProbeContext
from lab.sources import ArraySource


def clauset_fit(values, thresh=EVALS_THRESH):
    """(alpha, xmin, D) by a plain loop over the candidate xmins (every value but the largest)."""
    x = np.sort(np.asarray(values, dtype=np.float64)[np.asarray(values) > thresh])
    best = (np.inf, None, None)
    for xmin in x[:-1]:
        tail = x[x >= xmin]
        n = tail.size
        alpha = 1.0 + n / np.sum(np.log(tail / xmin))
        d = 1.0
        if alpha > 1:
            model = scipy.stats.pareto(b=alpha - 1.0, scale=xmin).cdf(tail)
            d = float(np.max(np.abs(model - np.arange(n) / n)))
        if d < best[0]:
            best = (d, alpha, xmin)
    return best[1], best[2], best[0]


@pytest.mark.parametrize("alpha,n,seed", [(2.5, 2000, 1), (3.5, 1500, 2), (1.8, 1000, 3)])
def test_pareto_alpha_recovered_and_equal_to_direct_fit(alpha, n, seed):
    rng = np.random.default_rng(seed)
    x = 0.5 * (1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0))  # density ∝ x^(-alpha) above 0.5
    fit = fit_power_law(x)
    a_ref, xmin_ref, d_ref = clauset_fit(x)
    assert fit.alpha == pytest.approx(a_ref, rel=1e-10)
    assert fit.xmin == xmin_ref
    assert fit.D == pytest.approx(d_ref, rel=1e-9, abs=1e-12)
    assert fit.num_pl_spikes == int((x >= xmin_ref).sum())
    # recovered within sampling error: the MLE's standard error is (alpha − 1)/√n_tail
    assert abs(fit.alpha - alpha) < 4 * fit.sigma
    assert fit.sigma == pytest.approx((a_ref - 1) / np.sqrt(fit.num_pl_spikes))


def test_too_few_values_give_no_fit():
    fit = fit_power_law(np.array([3.0, 1e-7, 0.0]))
    assert np.isnan(fit.alpha) and fit.num_pl_spikes == 0 and fit.num_fitted == 1


@pytest.fixture(scope="module")
def minilm():
    return load_file(str(minilm_path() / "model.safetensors"))


@pytest.mark.parametrize("key", ["encoder.layer.0.attention.self.query.weight",
                                 "encoder.layer.3.intermediate.dense.weight"])
def test_minilm_weights_against_numpy_svd_and_direct_fit(minilm, key):
    w = minilm[key].astype(np.float64)
    lam = np.linalg.svd(w, compute_uv=False) ** 2
    m = esd_metrics(w, seed=3)
    a_ref, xmin_ref, d_ref = clauset_fit(lam)
    assert m.fit.alpha == pytest.approx(a_ref, rel=1e-6)
    assert m.fit.xmin == pytest.approx(xmin_ref, rel=1e-9)  # the same eigenvalue (σ² from another solver)
    assert m.fit.D == pytest.approx(d_ref, rel=1e-5)
    assert m.num_evals == min(w.shape)
    assert m.lambda_max == pytest.approx(lam.max(), rel=1e-10)
    assert m.log_norm == pytest.approx(np.log10(np.linalg.norm(w) ** 2), rel=1e-10)
    assert m.log_spectral_norm == pytest.approx(np.log10(np.linalg.norm(w, 2) ** 2), rel=1e-10)
    assert m.alpha_weighted == pytest.approx(a_ref * np.log10(lam.max()), rel=1e-6)
    assert m.log_alpha_norm == pytest.approx(np.log10(np.sum(lam ** a_ref)), rel=1e-5)
    assert m.stable_rank == pytest.approx(np.linalg.norm(w) ** 2 / np.linalg.norm(w, 2) ** 2, rel=1e-10)
    rows, cols = w.shape
    edge = np.mean(w ** 2) * (np.sqrt(rows) + np.sqrt(cols)) ** 2
    assert m.mp_softrank == pytest.approx(edge / lam.max(), rel=1e-10)
    # the shuffled control, rebuilt here with the same permutation and scipy's distance
    perm = np.random.default_rng(3).permutation(w.size)
    rand = np.linalg.svd(w.ravel()[perm].reshape(w.shape), compute_uv=False) ** 2
    assert m.max_rand_eval == pytest.approx(rand.max(), rel=1e-8)
    assert m.num_rand_spikes == int((lam > rand.max()).sum())
    assert m.rand_distance == pytest.approx(scipy.spatial.distance.jensenshannon(np.sort(lam), np.sort(rand)), rel=1e-6)


def test_trained_weights_are_heavier_tailed_than_their_shuffle(minilm):
    """A sanity check of the control, not a finding: shuffling destroys the trained correlations."""
    w = minilm["encoder.layer.2.attention.self.query.weight"].astype(np.float64)
    m = esd_metrics(w, seed=0)
    assert m.num_rand_spikes >= 1 and m.lambda_max > m.max_rand_eval


def test_gaussian_matrix_sits_at_the_marchenko_pastur_edge():
    g = np.random.default_rng(5).standard_normal((600, 300))
    m = esd_metrics(g, seed=1)
    assert 0.9 < m.mp_softrank < 1.1  # Bai–Yin: σ₁² → (√rows + √cols)² for unit-variance entries
    assert m.num_rand_spikes <= 3


def test_factored_and_streamed_equal_dense():
    rng = np.random.default_rng(11)
    f = Factors(rng.standard_normal((80, 6)), rng.standard_normal((6, 50)), 0.7)
    dense = f.to_dense()
    a, b = esd_metrics(f, seed=2), esd_metrics(dense, seed=2)
    lam = np.linalg.svd(dense, compute_uv=False) ** 2
    np.testing.assert_allclose(eigenvalues(f)[:6], lam[:6], rtol=1e-10)
    assert a.fit.alpha == pytest.approx(b.fit.alpha, rel=1e-8) and a.fit.xmin == pytest.approx(b.fit.xmin, rel=1e-10)
    assert a.fit.num_pl_spikes == b.fit.num_pl_spikes
    for name in ("log_norm", "log_alpha_norm", "stable_rank", "mp_softrank", "rand_distance", "max_rand_eval"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-8), name
    w = rng.standard_normal((70, 40))
    s = esd_metrics(ArraySource(w), seed=0)
    d = esd_metrics(w, seed=0)
    assert s.fit.alpha == pytest.approx(d.fit.alpha, rel=1e-8) and s.fit.xmin == pytest.approx(d.fit.xmin, rel=1e-8)
    assert np.isnan(s.rand_distance) and np.isnan(s.num_rand_spikes)  # a streamed matrix is not shuffled


def test_probe_rows_for_delta_weight_and_tuned():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((48, 32))
    f = Factors(rng.standard_normal((48, 4)), rng.standard_normal((4, 32)), 0.5)
    delta = Delta("m", 0, "q", "lora", f, base=base)
    probe = available()["esd"]
    rows = probe.run(delta, ESDOptions(), ProbeContext(seed=9))["esd"]
    by = {r["source"]: r for r in rows}
    assert set(by) == {"delta", "weight", "tuned"}
    for source, m in (("delta", f.to_dense()), ("weight", base), ("tuned", base + f.to_dense())):
        lam = np.linalg.svd(m, compute_uv=False) ** 2  # ΔW's 4 nonzero λ: the small-sample rule (the default)
        a_ref, xmin_ref, _ = small_sample_reference(lam) if source == "delta" else clauset_fit(lam)
        assert by[source]["alpha"] == pytest.approx(a_ref, rel=1e-7), source
        assert by[source]["xmin"] == pytest.approx(xmin_ref, rel=1e-9), source
    assert by["delta"]["num_evals"] == 32
    only = probe.run(delta, ESDOptions(targets=("weight",), randomize=False), ProbeContext())["esd"]
    assert [r["source"] for r in only] == ["weight"] and np.isnan(only[0]["rand_distance"])
    with pytest.raises(ValueError, match="unknown target"):
        ESDOptions(targets=("base",))


def test_zero_matrix_has_no_fit():
    m = esd_metrics(np.zeros((5, 4)))
    assert np.isnan(m.fit.alpha) and np.isnan(m.log_norm) and m.fit.num_pl_spikes == 0


def small_sample_reference(values, thresh=EVALS_THRESH):
    """WeightWatcher 0.7.7's rule below 20 values, as its WWFit docstring states it: α = 1 + (n − 1)/Σ ln(x/xmin)
    over tails of at least 8 values (else the whole sample), the smallest D among them."""
    x = np.sort(np.asarray(values, dtype=np.float64)[np.asarray(values) > thresh])
    tails = [x[x >= xmin] for xmin in x[:-1] if (x >= xmin).sum() >= 8] or [x]
    best = (np.inf, None, None)
    for tail in tails:
        n = tail.size
        alpha = 1.0 + (n - 1) / np.sum(np.log(tail / tail[0]))
        d = float(np.max(np.abs(scipy.stats.pareto(b=alpha - 1.0, scale=tail[0]).cdf(tail) - np.arange(n) / n)))
        if d < best[0]:
            best = (d, alpha, tail[0])
    return best[1], best[2], best[0]


@pytest.mark.parametrize("n", [4, 8, 12, 19])
def test_small_sample_rule(n):
    rng = np.random.default_rng(n)
    x = (1.0 - rng.random(n)) ** (-1.0 / 1.5)
    fit = fit_power_law(x, small_sample=True)
    a_ref, xmin_ref, d_ref = small_sample_reference(x)
    assert fit.alpha == pytest.approx(a_ref, rel=1e-10) and fit.xmin == xmin_ref
    assert fit.D == pytest.approx(d_ref, rel=1e-9)
    assert fit_power_law(x, small_sample=False).alpha == pytest.approx(clauset_fit(x)[0], rel=1e-10)


def test_small_sample_rule_leaves_twenty_or_more_alone():
    x = (1.0 - np.random.default_rng(0).random(20)) ** (-1.0 / 1.5)
    assert fit_power_law(x, small_sample=True) == fit_power_law(x)
    f = Factors(*(np.random.default_rng(1).standard_normal(s) for s in ((40, 6), (6, 30))), 1.0)
    a = esd_metrics(f, randomize=False, small_sample=True)
    assert a.fit.alpha == pytest.approx(small_sample_reference(np.linalg.svd(f.to_dense(), compute_uv=False) ** 2)[0], rel=1e-8)


def test_shuffles_reuse_one_permutation_per_seed_and_size_and_equal_a_fresh_draw():
    # the permutation is kept between matrices (W, ΔW, every checkpoint's W + ΔW of a module shape):
    # each shuffle must still equal numpy's fresh default_rng(seed).permutation, whatever came before
    from lab.probes.esd import shuffled_eigenvalues

    rng = np.random.default_rng(1)
    shapes = [(30, 20), (20, 30), (12, 50), (40, 15), (8, 75), (30, 20), (25, 24)]  # more sizes than are kept
    for seed in (0, 3, 0):
        for shape in shapes:
            m = rng.standard_normal(shape)
            fresh = m.ravel()[np.random.default_rng(seed).permutation(m.size)].reshape(shape)
            want = np.sort(np.linalg.svd(fresh, compute_uv=False) ** 2)[::-1]
            np.testing.assert_allclose(shuffled_eigenvalues(m, seed), want, rtol=1e-10, atol=1e-12)
