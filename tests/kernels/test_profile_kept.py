"""kept_profile: a base W's entanglement profile kept in its memo (what the base cache stores), the same
bits as entanglement_profile, and never for a matrix that may change in place."""

from __future__ import annotations

import numpy as np

from lab.kernels.memo import PURE, memo_for
from lab.kernels.profile import entanglement_profile, kept_profile
from references import numpy_entropies


def _profile_key(memo: dict) -> str:
    (key,) = [k for k in memo if k.startswith(PURE + "entanglement_profile:")]
    return key


def test_kept_profile_is_entanglement_profile_and_is_kept():
    w = np.random.default_rng(0).standard_normal((12, 18))
    kept, plain = kept_profile(w), entanglement_profile(w.copy())
    for name in ("entropy", "renyi2", "max_entropy", "page_entropy", "d_left", "d_right"):
        assert np.asarray(getattr(kept, name)).tobytes() == np.asarray(getattr(plain, name)).tobytes(), name
    np.testing.assert_allclose(kept.entropy, numpy_entropies(w, kept.sites.dims), rtol=1e-12, atol=1e-13)
    memo = memo_for(w)
    entropy, renyi2, small = memo[_profile_key(memo)]
    assert entropy.tobytes() == kept.entropy.tobytes() and renyi2.tobytes() == kept.renyi2.tobytes()
    # the row|column cut's σ² (12 of them: W·Wᵀ), left for the spectra probe, kept with the entropies
    np.testing.assert_allclose(np.sort(small)[::-1], np.linalg.svd(w, compute_uv=False) ** 2, rtol=1e-12)
    assert small is memo["small_eigvals"]


def test_an_entry_read_back_puts_the_sigma_squared_back():
    w = np.random.default_rng(1).standard_normal((12, 18))
    first = kept_profile(w)
    memo = memo_for(w)
    key = _profile_key(memo)
    again = w.copy()  # as a sweep's next checkpoint reads W: another array, the stored entry put into its memo
    memo_for(again)[key] = tuple(a.copy() for a in memo[key])
    second = kept_profile(again)
    assert second.entropy.tobytes() == first.entropy.tobytes()
    assert memo_for(again)["small_eigvals"].tobytes() == memo["small_eigvals"].tobytes()


def test_entanglement_profile_keeps_nothing_so_a_changed_matrix_is_recomputed():
    w = np.random.default_rng(2).standard_normal((12, 18))
    before = entanglement_profile(w)
    assert not any(k.startswith(PURE) for k in memo_for(w))
    w[:6] *= 10.0  # changed in place: the profile changes and is computed again
    after = entanglement_profile(w)
    np.testing.assert_allclose(after.entropy, numpy_entropies(w, after.sites.dims), rtol=1e-12, atol=1e-13)
    assert not np.allclose(after.entropy, before.entropy)
