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


def _tridiagonal_or_skip():
    if linalg._openblas() is None:
        pytest.skip("numpy's OpenBLAS does not export dsytrd/dsterf/dstebz/dstein/dormtr here")


def test_tridiagonal_eigenvalues_are_numpys_eigvalsh_bit_for_bit():
    """psd_eigvals from LANCZOS_FROM rows keeps a tridiagonal reduction; its eigenvalues are the two
    LAPACK calls numpy's eigvalsh makes, so every profile and spectrum keeps its bits."""
    _tridiagonal_or_skip()
    x = np.random.default_rng(5).standard_normal((600, 1500)) * np.linspace(1e-3, 1.0, 1500)
    g = x @ x.T
    w = linalg.Tridiagonal(g).eigvals()
    assert np.array_equal(w, np.linalg.eigvalsh(g))
    # psd_eigvals solves on one OpenBLAS thread (at some sizes two threads sum dsymv in another order):
    # numpy's eigvalsh on one thread, set through threadpoolctl, is its reference
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        reference = np.clip(np.linalg.eigvalsh(g), 0.0, None)
    assert np.array_equal(psd_eigvals(g), reference)
    assert "tridiagonal" in linalg.memo_for(g)


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info

    return next(i["num_threads"] for i in threadpool_info() if i["internal_api"] == "openblas" and "numpy" in i["filepath"])


def test_one_blas_thread_limits_numpys_openblas_and_restores_it():
    """threadpoolctl (which reads the library itself) sees one thread inside, nested blocks and blocks on
    several Python threads at once keep it, and the count before comes back when the last one leaves."""
    import threading

    from threadpoolctl import threadpool_limits

    if linalg._openblas_threads() is None:
        pytest.skip("numpy's OpenBLAS exports no thread-count functions here")
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        seen, gate = [], threading.Barrier(2)

        def lane():
            with linalg.one_blas_thread():
                gate.wait(timeout=30)  # both lanes inside at once
                seen.append(_blas_threads())
                gate.wait(timeout=30)  # neither leaves before both looked
            seen.append(("after one", None))

        with linalg.one_blas_thread():
            assert _blas_threads() == 1
            with linalg.one_blas_thread():
                assert _blas_threads() == 1
            assert _blas_threads() == 1
        assert _blas_threads() == before
        threads = [threading.Thread(target=lane) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert [s for s in seen if s != ("after one", None)] == [1, 1]
        assert _blas_threads() == before


@pytest.mark.parametrize("k", [1, 10, 75])
def test_leading_pairs_from_the_reduction_match_numpys_eigh(k):
    _tridiagonal_or_skip()
    g, lam, _ = _with_spectrum(600, 11)
    w, v = linalg.Tridiagonal(g).leading(k)
    w_ref, v_ref = np.linalg.eigh(g)
    w_ref, v_ref = w_ref[::-1][:k], v_ref[:, ::-1][:, :k]
    assert np.allclose(w, w_ref, rtol=0, atol=1e-13 * w_ref[0])
    assert np.allclose(w, lam[::-1][:k], rtol=0, atol=1e-12 * lam[-1])
    assert np.allclose(v.T @ v, np.eye(k), atol=1e-13)
    assert np.allclose(np.abs((v * v_ref).sum(axis=0)), 1.0, atol=1e-10)  # distinct eigenvalues: same vectors up to sign
    assert np.allclose(g @ v, v * w, atol=1e-12 * w_ref[0])


def test_leading_pairs_of_a_repeated_eigenvalue_span_its_whole_eigenspace():
    """A top eigenvalue repeated 40 times (one start vector of Lanczos finds one direction of it):
    bisection counts all of them and inverse iteration reorthogonalises within the cluster."""
    _tridiagonal_or_skip()
    rng = np.random.default_rng(2)
    n, m = 640, 40
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    lam = np.concatenate([np.full(m, 5.0), rng.uniform(0.0, 3.0, n - m)])
    g = (q * lam) @ q.T
    w, v = linalg.leading_eigh(g, m + 10)
    assert np.allclose(w[:m], 5.0, atol=1e-12)
    assert np.allclose(w[m:], np.sort(lam[m:])[::-1][:10], atol=1e-12)
    assert np.allclose(v.T @ v, np.eye(m + 10), atol=1e-12)
    top = q[:, :m]  # the repeated eigenvalue's eigenspace: v's first m columns span it
    assert np.allclose(np.linalg.svd(top.T @ v[:, :m], compute_uv=False), 1.0, atol=1e-10)


def test_leading_eigh_reuses_a_kept_reduction_and_otherwise_routes_by_k(monkeypatch):
    """Few vectors: Lanczos unless psd_eigvals reduced the same matrix already; many: a new reduction.
    Both give the pairs numpy's eigh gives."""
    _tridiagonal_or_skip()
    g, _, _ = _with_spectrum(1024, 4)
    w_ref, v_ref = np.linalg.eigh(g)
    w_ref, v_ref = w_ref[::-1], v_ref[:, ::-1]
    calls = []
    real = linalg.Tridiagonal.leading
    monkeypatch.setattr(linalg.Tridiagonal, "leading", lambda self, k: calls.append(k) or real(self, k))
    for k, reduced in ((5, False), (16, True), (5, True)):  # 16 ≥ 1024/64: reduced, kept; then 5 reuses it
        w, v = linalg.leading_eigh(g, k)
        assert (calls[-1:] == [k]) == reduced
        assert np.allclose(w, w_ref[:k], atol=1e-12 * w_ref[0])
        assert np.allclose(np.abs((v * v_ref[:, :k]).sum(axis=0)), 1.0, atol=1e-9)


def test_in_lanes_gives_each_solve_the_bits_it_has_alone():
    """Two lanes run LAPACK side by side: every result, in the tasks' order, equals the same solve made
    alone on one thread (numpy's eigvalsh, ARPACK's Lanczos, the tridiagonal route), and a task's error
    is raised after all have ended. With one BLAS thread the tasks run one after another, same bits."""
    from scipy.sparse.linalg import eigsh
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(8)
    grams = [gram(rng.standard_normal((n, n + 40))) for n in (700, 300, 640, 90)]
    v0 = rng.standard_normal(700)

    def tasks():
        return [lambda: np.linalg.eigvalsh(grams[0]), lambda: eigsh(grams[0], k=5, which="LA", tol=0.0, v0=v0)[0],
                lambda: np.linalg.eigvalsh(grams[1]), lambda: linalg.leading_eigh(grams[2], 80)[0],
                lambda: psd_eigvals(grams[3])]

    with threadpool_limits(1, user_api="blas"):
        alone = [t() for t in tasks()]
        serial = linalg.in_lanes(tasks())
    with threadpool_limits(2, user_api="blas"):
        lanes = linalg.in_lanes(tasks())
        assert _blas_threads() == 2
        ended = []

        def fails():
            raise np.linalg.LinAlgError("no")

        def slow():
            ended.append(np.linalg.eigvalsh(grams[0]).size)

        with pytest.raises(np.linalg.LinAlgError):
            linalg.in_lanes([fails, slow, slow])
        assert ended == [700, 700]
    for a, b, c in zip(alone, serial, lanes):
        assert np.array_equal(a, b) and np.array_equal(a, c)
