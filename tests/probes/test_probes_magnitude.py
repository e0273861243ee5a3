"""Inputs near float64's limits: every weight probe's number is a property of the matrix, not of
how its Gram fits in float64 (issue 14's fuzz finds: lora_alpha = 1e308 or 1e-300, weights × 1e300).

Independent route: the same matrix at an ordinary magnitude, with the scale law each number obeys
(entropies and ranks do not change with c·M; σ and norms scale with |c|).
"""

from __future__ import annotations

import numpy as np
import pytest

from lab.deltas import Delta, Factors
from lab.probes.entanglement import entanglement_profile
from lab.probes.spectra import spectrum
from lab.kernels.subspaces import top_singular_vectors

SCALES = [1e300, 1e-300, -1e305, 1e-290]


def _matrix(rows: int = 48, cols: int = 40, rank: int = 6) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.standard_normal((rows, rank)) @ rng.standard_normal((rank, cols)) + 1e-3 * rng.standard_normal((rows, cols))


def _factors() -> Factors:
    rng = np.random.default_rng(8)
    return Factors(rng.standard_normal((64, 4)), rng.standard_normal((4, 48)), 0.5)


@pytest.mark.parametrize("c", SCALES)
def test_dense_profile_and_spectrum_do_not_depend_on_magnitude(c):
    m = _matrix()
    ref, big = entanglement_profile(m), entanglement_profile(m * c)
    assert np.isfinite(big.entropy).all()
    np.testing.assert_allclose(big.entropy, ref.entropy, rtol=1e-10, atol=1e-12)
    s_ref, s = spectrum(m), spectrum(m * c)
    np.testing.assert_allclose(s.sigma / abs(c), s_ref.sigma, rtol=1e-10)
    assert s.fro_norm / abs(c) == pytest.approx(np.linalg.norm(m), rel=1e-12)
    assert s.stable_rank == pytest.approx(s_ref.stable_rank, rel=1e-10)
    assert s.entropy_rank == pytest.approx(s_ref.entropy_rank, rel=1e-10)
    assert s.effective_rank == pytest.approx(s_ref.effective_rank, rel=1e-10)
    assert (s.numerical_rank, s.energy_rank(0.9)) == (s_ref.numerical_rank, s_ref.energy_rank(0.9))
    assert Delta("m", None, "other", "full", m * c).fro_norm() / abs(c) == pytest.approx(np.linalg.norm(m), rel=1e-12)


@pytest.mark.parametrize("c", SCALES)
def test_factored_profile_and_spectrum_do_not_depend_on_scale(c):
    f = _factors()
    scaled = Factors(f.B, f.A, f.scale * c)
    ref, big = entanglement_profile(f), entanglement_profile(scaled)
    assert np.isfinite(big.entropy).all()
    np.testing.assert_allclose(big.entropy, ref.entropy, rtol=1e-10, atol=1e-12)
    # and equal to the dense route at an ordinary magnitude
    np.testing.assert_allclose(big.entropy, entanglement_profile(f.to_dense()).entropy, rtol=1e-8, atol=1e-10)
    s_ref, s = spectrum(f), spectrum(scaled)
    np.testing.assert_allclose(s.sigma / abs(c), s_ref.sigma, rtol=1e-10)
    assert s.stable_rank == pytest.approx(s_ref.stable_rank, rel=1e-10)


@pytest.mark.parametrize("c", SCALES)
def test_singular_vectors_do_not_depend_on_magnitude(c):
    m = _matrix()
    u_ref, s_ref, v_ref = top_singular_vectors(m, 5)
    u, s, v = top_singular_vectors(m * c, 5)
    assert u.shape == u_ref.shape
    np.testing.assert_allclose(np.abs(u.T @ u_ref), np.eye(5), atol=1e-8)  # same directions up to sign
    np.testing.assert_allclose(s / abs(c), s_ref, rtol=1e-10)
