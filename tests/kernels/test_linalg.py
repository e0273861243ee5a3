"""The dense kernels against closed forms: both eigen-solver routes (numpy below TORCH_FROM rows,
torch from there on) give the eigenvalues a matrix was built with."""

import numpy as np
import pytest

from lab.kernels import linalg
from lab.kernels.linalg import gram, psd_eigh, psd_eigvals


def _with_spectrum(n: int, seed: int):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.sort(rng.uniform(0.0, 3.0, n))
    lam[:3] = 0.0  # singular: the clipped zeros must stay (near) zero
    return (q * lam) @ q.T, lam, q


@pytest.mark.parametrize("n", [7, 300])
@pytest.mark.parametrize("torch_from", [10**9, 5])  # all numpy; torch for all but the tiny
def test_eigenvalues_on_both_routes(n, torch_from, monkeypatch):
    monkeypatch.setattr(linalg, "TORCH_FROM", torch_from)
    g, lam, q = _with_spectrum(n, n)
    w = psd_eigvals(g)
    assert np.all(w >= 0.0)
    assert np.allclose(w, lam, atol=1e-12 * n)
    w2, v = psd_eigh(g)
    assert np.allclose(w2, lam, atol=1e-12 * n)
    assert np.allclose((v * w2) @ v.T, g, atol=1e-10)


def test_gram_takes_the_smaller_side():
    x = np.random.default_rng(0).standard_normal((5, 40))
    assert np.allclose(gram(x), np.einsum("ik,jk->ij", x, x))
    assert np.allclose(gram(x.T), np.einsum("ik,jk->ij", x, x))
    assert gram(x.astype(np.float32)).dtype == np.float64


def test_mkl_route_equals_torchs_eigvalsh_without_importing_torch_for_it(monkeypatch):
    """The large-Gram route calls MKL's dsyevd through ctypes: the numbers torch.linalg.eigvalsh
    (the same MKL call) gives, and the closed form; with the symbol missing, torch's own call."""
    torch = pytest.importorskip("torch")
    g, lam, _ = _with_spectrum(400, 3)
    monkeypatch.setattr(linalg, "TORCH_FROM", 5)
    if linalg._mkl_dsyevd() is None:
        pytest.skip("this torch exports no MKL dsyevd_64_ (built without MKL)")
    w = linalg._mkl_eigvalsh(g)
    assert np.array_equal(w, torch.linalg.eigvalsh(torch.from_numpy(g)).numpy())
    assert np.allclose(np.clip(w, 0.0, None), lam, atol=1e-12 * 400)
    assert np.array_equal(psd_eigvals(g), np.clip(w, 0.0, None))
    monkeypatch.setattr(linalg, "_MKL", [None])  # no MKL symbol: torch's eigvalsh
    assert np.allclose(psd_eigvals(g), lam, atol=1e-12 * 400)
