"""The intruders sweep against numpy's full SVD of W and W + ΔW, on both sides, over every (ε, k)."""

import numpy as np
import pytest

from lab.deltas import Delta, Factors
from lab.probes import available
from lab.probes.intruders import IntrudersOptions, intruder_sweep
from lab.probes.registry import ProbeContext
from lab.probes.spectra import SpectraOptions, alignment

EPS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def numpy_max_cos(base, tuned, k):
    """(σ, c_left, c_right) of the top k vectors of ``tuned`` by numpy's SVD, against all of W's."""
    u_w, s_w, vt_w = np.linalg.svd(base, full_matrices=False)
    keep = s_w > s_w[0] * max(base.shape) * np.finfo(float).eps
    u_t, s_t, vt_t = np.linalg.svd(tuned, full_matrices=False)
    k = min(k, s_t.size)
    left = np.abs(u_t[:, :k].T @ u_w[:, keep]).max(axis=1)
    right = np.abs(vt_t[:k] @ vt_w[keep].T).max(axis=1)
    return s_t[:k], left, right


def _check(base, delta_x, dense_delta, ks=(10, 20, 50, 100)):
    sweep = intruder_sweep(base, delta_x, ks)
    sigma, left, right = numpy_max_cos(base, base + dense_delta, max(ks))
    np.testing.assert_allclose(sweep.left.sigma, sigma, rtol=1e-9)
    np.testing.assert_allclose(sweep.left.max_cos, left, atol=1e-7)
    np.testing.assert_allclose(sweep.right.max_cos, right, atol=1e-7)
    margin = min(np.abs(np.subtract.outer(np.concatenate([left, right]), EPS)).min(), 1.0)
    assert margin > 1e-6  # no cosine sits on a threshold, so the counts below are decided
    for k in ks:
        for e in EPS:
            assert sweep.count("left", e, k) == int((left[:k] < e).sum())
            assert sweep.count("right", e, k) == int((right[:k] < e).sum())
    return sweep, left, right


def test_dense_full_finetune_small():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((60, 45))
    d = 0.3 * rng.standard_normal((60, 45)) + 4.0 * np.outer(rng.standard_normal(60), rng.standard_normal(45)) / 30
    _check(base, d, d, ks=(5, 10, 45, 100))


def test_lora_factors_small():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((70, 50))
    f = Factors(rng.standard_normal((70, 4)), rng.standard_normal((4, 50)), 0.8)
    _, left, right = _check(base, f, f.to_dense(), ks=(10, 20, 50))
    assert (left < 0.5).any()  # a strong low-rank update makes intruders: the counts compared are not all zero


@pytest.mark.parametrize("strength", [0.02, 3.0])
def test_large_matrix_certified_or_full(strength):
    """n = 520 ≥ 512 (linalg.LANCZOS_FROM) and k = 10: W's leading 64 directions are solved first; a small
    update keeps every top vector close to W's own (the certificate holds), a strong random rank-2 one puts
    vectors in W's tail (it fails, and all of W's directions decide)."""
    rng = np.random.default_rng(2)
    base = rng.standard_normal((600, 520)) * np.linspace(2.0, 0.2, 520)
    b, a = rng.standard_normal((600, 2)), rng.standard_normal((2, 520))
    f = Factors(b, a, strength)
    sweep, left, _ = _check(base, f, f.to_dense(), ks=(10,))
    if strength > 1:
        assert sweep.count("left", 0.5, 10) >= 1


def test_agrees_with_the_spectra_probe_definition():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((50, 40))
    f = Factors(rng.standard_normal((50, 3)), rng.standard_normal((3, 40)), 1.0)
    align = alignment(f, base, SpectraOptions(intruder_top=10, intruder_threshold=0.6))
    sweep = intruder_sweep(base, f, (10,))
    assert sweep.count("left", 0.6, 10) == align.intruder_count
    assert sweep.left.max_cos[:10].min() == pytest.approx(align.intruder_min_cos, abs=1e-9)


def test_probe_rows():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((30, 24))
    f = Factors(rng.standard_normal((30, 2)), rng.standard_normal((2, 24)), 2.0)
    probe = available()["intruders"]
    opts = IntrudersOptions(thresholds=(0.3, 0.7), ks=(5, 50))
    rows = probe.run(Delta("m", 1, "v", "lora", f, base=base), opts, ProbeContext())
    counts, vectors = rows["intruders"], rows["intruder_vectors"]
    assert len(counts) == 2 * 2 * 2 and len(vectors) == 2 * 24
    for r in counts:
        assert r["examined"] == min(r["top_k"], 24)
        mine = [v for v in vectors if v["side"] == r["side"] and v["index"] <= r["top_k"]]
        assert r["intruder_count"] == sum(v["max_cos"] < r["threshold"] for v in mine)
    assert probe.run(Delta("m", 1, "v", "lora", f), opts, ProbeContext()) == {"intruders": [], "intruder_vectors": []}
    with pytest.raises(ValueError):
        IntrudersOptions(thresholds=(1.5,))
