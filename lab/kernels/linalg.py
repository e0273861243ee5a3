"""Dense kernels of the probes: float64 Gram matrices, symmetric eigenvalues, singular values.

Which library does what was decided by measurement on this project's 2-core AMD EPYC machine
(2 threads; bench/RESULTS.md has the setting):

* Gram: numpy's ``x @ x.T`` goes to OpenBLAS ``dsyrk`` (half the flops of a general product):
  4096×4096 in ~0.8 s, faster than torch's general ``matmul``.
* Eigenvalues of a large Gram matrix: torch's ``linalg.eigvalsh`` (MKL ``dsyevd`` in the CPU
  wheels) ~2.0 s at n = 4096 against ~3.8 s for numpy's OpenBLAS (~4 s against 6–8 s on one
  thread). At n = 2048 the two are level (~0.35–0.5 s), below that numpy is faster.
* numpy and torch each keep their own thread pool, and handing work from one to the other costs
  a stall (the idle pool's threads still spinning): negligible next to a 2 s solve, but it made
  384×384 profiles 5× slower and the spectra of a whole model 2× slower when every small solve
  went to torch. So only solves of ``TORCH_FROM`` rows or more go to torch, and callers that
  have many (lab.kernels.schmidt) run the small ones first, so the pools change hands once.

* A few leading eigenpairs of a Gram of ``LANCZOS_FROM`` rows or more: from its tridiagonal
  reduction (:class:`Tridiagonal`, numpy's own OpenBLAS LAPACK through ctypes) when
  :func:`psd_eigvals` already reduced that matrix (ΔW's small-side Gram: the profile solves it,
  the spectra probe wants its top 16; ~0.02 s then instead of a 0.45–0.55 s Lanczos at n = 2048)
  or when many are wanted (k ≥ n / 64), else by Lanczos (ARPACK).

scipy's LAPACK is not used at all: it ships a third thread pool (its own OpenBLAS).
Everything is float64; arrays are shared with torch without copies.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from lab.kernels.memo import memo_for

TORCH_FROM = 3000  # symmetric eigenproblems at least this large go to torch (MKL)


# Entries with max |x| inside this range keep every Gram entry (≤ n·max²) finite and above float64's
# normal range; outside it the kernels work on x / max|x| and scale back what depends on scale.
SAFE_MAGNITUDE = (1e-100, 1e100)


def rescaled(x: np.ndarray) -> tuple[np.ndarray, float]:
    """(x / t, t) with t = max |x| when x's magnitude would make its Gram overflow or underflow
    (a corrupted or hand-edited checkpoint: weights near 1e300, a scale near 1e-300); (x, 1.0)
    otherwise, so ordinary inputs are not touched (their results stay bit-for-bit)."""
    # max |x| without an |x| temporary of x's size (a 4096² float64 update: 128 MiB written and read again)
    top = max(float(np.max(x, initial=0.0)), -float(np.min(x, initial=0.0))) if x.size else 0.0
    if top == 0.0 or not np.isfinite(top) or SAFE_MAGNITUDE[0] <= top <= SAFE_MAGNITUDE[1]:
        return x, 1.0
    return x / top, top


def gram(x: np.ndarray) -> np.ndarray:
    """x·xᵀ or xᵀ·x, whichever is smaller, in float64 (numpy hands x @ x.T to BLAS ?syrk)."""
    x = np.asarray(x, dtype=np.float64)
    return x @ x.T if x.shape[0] <= x.shape[1] else x.T @ x


_POOL: list = []  # [(get, set) of numpy's OpenBLAS thread count, or None], looked up once
_ONE_LOCK = threading.Lock()
_ONE_STATE = [0, 0]  # [blocks inside one_blas_thread, the thread count to restore when the last one leaves]


def _openblas_threads():
    """(get, set) of numpy's OpenBLAS thread count through ctypes (microseconds, where threadpoolctl's
    ``threadpool_limits`` scans every loaded library on each call: milliseconds), or None."""
    if not _POOL:
        lib, fns = _openblas(), None
        if lib is not None:
            get = getattr(lib, "scipy_openblas_get_num_threads64_", None)
            put = getattr(lib, "scipy_openblas_set_num_threads64_", None)
            if get is not None and put is not None:
                import ctypes

                get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
                fns = (get, put)
        _POOL.append(fns)
    return _POOL[0]


@contextlib.contextmanager
def one_blas_thread():
    """numpy's OpenBLAS on one thread inside the block (restored when the last concurrent block leaves).

    The symmetric eigensolves below ``TORCH_FROM`` rows (``dsytrd``: half its flops are ``dsymv``,
    bound by memory) gain nothing from a second OpenBLAS thread and lose much when the second core is
    busy: the helper thread spins or waits at every panel. Measured on this project's 2-core machine at
    load ~4 (bench/RESULTS.md, issue 23 §4): ``dsytrd`` of a 2048² Gram 2.5–7.4 s wall on two threads
    against 0.7–1.2 s on one, of a 512² one 0.13–0.64 s against 0.025 s. One thread also makes those
    solves' bits independent of the process's BLAS setting (at some sizes, 256 and 384 among them,
    OpenBLAS's two-thread ``dsymv`` sums in another order: differences of ~1e-15 relative), so a serial
    run and one-thread Dask workers give the same numbers. Several Python threads may be inside at once
    (:func:`in_lanes`): each then runs its own one-thread LAPACK calls.
    """
    fns = _openblas_threads()
    if fns is None:
        yield
        return
    get, put = fns
    with _ONE_LOCK:
        if _ONE_STATE[0] == 0:
            _ONE_STATE[1] = int(get())
            if _ONE_STATE[1] != 1:
                put(1)
        _ONE_STATE[0] += 1
    try:
        yield
    finally:
        with _ONE_LOCK:
            _ONE_STATE[0] -= 1
            if _ONE_STATE[0] == 0 and _ONE_STATE[1] != 1:
                put(_ONE_STATE[1])


_LANES: list = []  # [(pid, the two-thread executor of in_lanes)], made on first use in each process


def in_lanes(tasks):
    """Each task's result, in order: argument-less callables run two at a time on Python threads, each
    inside :func:`one_blas_thread`, where numpy's OpenBLAS may use two or more threads; one after another
    (still on one thread each) where it may use one (a one-thread Dask worker: no oversubscription) or
    inside a :func:`one_blas_thread` block already.

    For independent one-thread LAPACK work of one unit (the profile's cut solves, W's and W + ΔW's leading
    directions): ctypes and numpy release the GIL in LAPACK, so two solves of a few hundred milliseconds
    fill both cores where one two-thread solve (mostly matrix-vector products) fills about one. Each task
    makes the same calls as when run alone: the results do not depend on the lanes. Tasks must not share
    a matrix whose memo (:mod:`lab.kernels.memo`) they create: make it on the calling thread first.
    The first exception of a task is raised here, after every task has ended.
    """
    tasks = list(tasks)
    fns = _openblas_threads()
    with _ONE_LOCK:
        two = fns is not None and _ONE_STATE[0] == 0 and int(fns[0]()) >= 2
    if not two or len(tasks) < 2:
        out = []
        for task in tasks:
            with one_blas_thread():
                out.append(task())
        return out
    import os

    if not _LANES or _LANES[0][0] != os.getpid():  # a forked child inherits the executor but not its threads
        from concurrent.futures import ThreadPoolExecutor

        _LANES[:] = [(os.getpid(), ThreadPoolExecutor(max_workers=2, thread_name_prefix="lab-lane"))]

    def run(task):
        with one_blas_thread():
            return task()

    futures = [_LANES[0][1].submit(run, task) for task in tasks]
    errors = [f.exception() for f in futures]  # waits for every task
    for e in errors:
        if e is not None:
            raise e
    return [f.result() for f in futures]


def psd_eigvals(g: np.ndarray) -> np.ndarray:
    """Eigenvalues (ascending) of a symmetric positive semi-definite float64 matrix, negatives
    from rounding clipped to 0.

    From ``LANCZOS_FROM`` rows up to ``TORCH_FROM`` the solve keeps its tridiagonal reduction in
    ``g``'s memo (:func:`tridiagonal`): the same eigenvalues, bit for bit, as numpy's ``eigvalsh``
    (the same LAPACK calls), and a later :func:`leading_eigh` of the same matrix (ΔW's small-side
    Gram: the profile needs its eigenvalues, the spectra probe its leading vectors) starts from it.
    """
    g = np.asarray(g, dtype=np.float64)
    if g.shape[0] == 0:
        return np.zeros(0)
    if g.shape[0] >= TORCH_FROM:
        w = _mkl_eigvalsh(g)
    else:
        with one_blas_thread():
            w = t.eigvals() if g.shape[0] >= LANCZOS_FROM and (t := tridiagonal(g)) is not None else np.linalg.eigvalsh(g)
    return np.clip(w, 0.0, None)


_MKL: list = []  # [dsyevd_64_ of torch's MKL, or None where it is not there], looked up once


def _mkl_dsyevd():
    """MKL's ``dsyevd_64_`` from torch's ``libtorch_cpu`` via ctypes, or None (no such symbol)."""
    if not _MKL:
        import ctypes
        import importlib.util
        from pathlib import Path

        f = None
        spec = importlib.util.find_spec("torch")
        lib = Path(spec.origin).parent / "lib" / "libtorch_cpu.so" if spec is not None and spec.origin else None
        if lib is not None and lib.is_file():
            try:
                f = getattr(ctypes.CDLL(str(lib)), "dsyevd_64_")
            except (OSError, AttributeError):
                f = None
        _MKL.append(f)
    return _MKL[0]


def _mkl_eigvalsh(g: np.ndarray) -> np.ndarray:
    """Eigenvalues (ascending) of a large symmetric matrix by MKL's ``dsyevd`` (eigenvalues only).

    The same LAPACK call, on the same lower triangle and workspace query, as
    ``torch.linalg.eigvalsh`` makes, so the two give the same numbers; but torch itself is not
    imported (its import, ~1.5 CPU seconds, was most of a one-module ``lab analyze``'s time over
    the kernels). MKL is reached through ``libtorch_cpu``'s exported ILP64 symbol; without it (a
    torch built without MKL, or no torch) ``torch.linalg.eigvalsh``, else numpy. MKL's OpenMP pool
    is torch's (``libgomp``), which threadpoolctl limits like torch's.
    """
    f = _mkl_dsyevd()
    if f is None:
        try:
            import torch
        except ImportError:
            return np.linalg.eigvalsh(g)
        return torch.linalg.eigvalsh(torch.from_numpy(g)).numpy()
    import ctypes

    n = g.shape[0]
    # Fortran order of the symmetric copy is the same matrix; 'L' reads the lower triangle
    a = np.array(g, dtype=np.float64, order="F", copy=True)
    w = np.empty(n)
    i64 = ctypes.c_int64
    ptr = (lambda x: x.ctypes.data_as(ctypes.c_void_p))

    def call(work, lwork, iwork, liwork):
        info = i64(0)
        f(ctypes.c_char_p(b"N"), ctypes.c_char_p(b"L"), ctypes.byref(i64(n)), ptr(a), ctypes.byref(i64(n)), ptr(w),
          ptr(work), ctypes.byref(i64(lwork)), ptr(iwork), ctypes.byref(i64(liwork)), ctypes.byref(info),
          ctypes.c_size_t(1), ctypes.c_size_t(1))
        return info.value

    work, iwork = np.empty(1), np.empty(1, dtype=np.int64)
    info = call(work, -1, iwork, -1)  # workspace query
    if info == 0:
        lwork, liwork = max(int(work[0]), 2 * n + 1), max(int(iwork[0]), 1)
        info = call(np.empty(lwork), lwork, np.empty(liwork, dtype=np.int64), liwork)
    if info != 0:
        raise np.linalg.LinAlgError(f"MKL dsyevd failed on a {n}x{n} Gram matrix (info = {info})")
    return w


_OPENBLAS: list = []  # [numpy's own OpenBLAS as a ctypes library, or None], looked up once
_ROUTINES = ("dsytrd", "dsterf", "dstebz", "dstein", "dormtr")


def _openblas():
    """numpy's bundled OpenBLAS (``numpy.libs/libscipy_openblas64_*.so``, ILP64, symbols
    ``scipy_<routine>_64_``) when it exports the tridiagonal routines, else None. It is the library
    numpy's own ``eigvalsh`` calls, already loaded, so no other thread pool comes with it."""
    if not _OPENBLAS:
        import ctypes
        from pathlib import Path

        lib = None
        for path in sorted((Path(np.__file__).parent.parent / "numpy.libs").glob("libscipy_openblas64_*.so")):
            try:
                cand = ctypes.CDLL(str(path))
                if all(hasattr(cand, f"scipy_{r}_64_") for r in _ROUTINES):
                    lib = cand
                    break
            except OSError:
                continue
        _OPENBLAS.append(lib)
    return _OPENBLAS[0]


class Tridiagonal:
    """The tridiagonal reduction Qᵀ·G·Q = T of a symmetric matrix G (LAPACK ``dsytrd``, lower triangle).

    :meth:`eigvals` is ``dsterf`` on T: the two calls numpy's ``eigvalsh`` makes (``dsyevd`` without
    vectors), with the same workspace, so the same eigenvalues bit for bit. :meth:`leading` gives the k
    largest eigenpairs from the same T as ``dsyevr`` does for an index range: bisection (``dstebz``,
    to the smallest absolute tolerance), inverse iteration (``dstein``, reorthogonalised within
    clusters) and the reflectors applied to the k vectors (``dormtr``), O(n²·k) after the O(n³)
    reduction, against Lanczos's thousands of O(n²) products. A matrix whose norm is outside
    ``SAFE_MAGNITUDE`` is not reduced here (:func:`tridiagonal` returns None; ``dsyevd`` rescales it).
    """

    def __init__(self, g: np.ndarray) -> None:
        lib, n = _openblas(), g.shape[0]
        self.n = n
        self.a = np.array(g, dtype=np.float64, order="F", copy=True)  # the reflectors, below the diagonal
        self.d, self.e, self.tau = np.empty(n), np.empty(max(n - 1, 1)), np.empty(max(n - 1, 1))
        work = np.empty(1)
        self._call(lib.scipy_dsytrd_64_, b"L", n, self.a, n, self.d, self.e, self.tau, work, -1, hidden=1)
        lwork = max(int(work[0]), 1)
        self._call(lib.scipy_dsytrd_64_, b"L", n, self.a, n, self.d, self.e, self.tau, np.empty(lwork), lwork, hidden=1)

    @staticmethod
    def _call(f, *args, hidden: int = 0) -> None:
        """Call a Fortran LAPACK routine: bytes as characters, ints as 64-bit integers, floats as
        doubles, arrays by pointer; ``hidden`` trailing character lengths; raises on info ≠ 0."""
        import ctypes

        info = ctypes.c_int64(0)
        conv = []
        for a in args:
            if isinstance(a, bytes):
                conv.append(ctypes.c_char_p(a))
            elif isinstance(a, np.ndarray):
                conv.append(a.ctypes.data_as(ctypes.c_void_p))
            elif isinstance(a, float):
                conv.append(ctypes.byref(ctypes.c_double(a)))
            else:
                conv.append(ctypes.byref(ctypes.c_int64(int(a))))
        f(*conv, ctypes.byref(info), *([ctypes.c_size_t(1)] * hidden))
        if info.value != 0:
            raise np.linalg.LinAlgError(f"LAPACK {getattr(f, '__name__', 'routine')} failed (info = {info.value})")

    def eigvals(self) -> np.ndarray:
        """All eigenvalues, ascending (``dsterf`` on copies of T)."""
        d, e = self.d.copy(), self.e.copy()
        self._call(_openblas().scipy_dsterf_64_, self.n, d, e)
        return d

    def leading(self, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(eigenvalues descending, eigenvectors as columns) of the k largest, or None where inverse
        iteration did not converge for some vector (the caller solves another way)."""
        lib, n = _openblas(), self.n
        k = min(max(int(k), 0), n)
        if k == 0:
            return np.zeros(0), np.zeros((n, 0))
        m, nsplit = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
        w, iblock, isplit = np.empty(n), np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        abstol = 2.0 * float(np.finfo(np.float64).tiny)  # LAPACK's "most accurate" bisection
        try:
            self._stebz(lib, n, k, abstol, m, nsplit, w, iblock, isplit)
            found = int(m[0])
            z = np.zeros((n, found), order="F")
            ifail = np.zeros(max(found, 1), dtype=np.int64)
            self._call(lib.scipy_dstein_64_, n, self.d, self.e, found, w, iblock, isplit, z, n, np.empty(5 * n),
                       np.empty(n, dtype=np.int64), ifail)
            work = np.empty(1)
            self._call(lib.scipy_dormtr_64_, b"L", b"L", b"N", n, found, self.a, n, self.tau, z, n, work, -1, hidden=3)
            lwork = max(int(work[0]), 1)
            self._call(lib.scipy_dormtr_64_, b"L", b"L", b"N", n, found, self.a, n, self.tau, z, n, np.empty(lwork),
                       lwork, hidden=3)
        except np.linalg.LinAlgError:
            return None
        order = np.argsort(w[:found], kind="stable")[::-1]
        return w[:found][order], np.ascontiguousarray(z[:, order])

    def _stebz(self, lib, n, k, abstol, m, nsplit, w, iblock, isplit) -> None:
        # (RANGE 'I', ORDER 'B': by split-off block, which dstein needs), eigenvalues n−k+1 … n
        import ctypes

        info = ctypes.c_int64(0)
        i64, dbl = ctypes.c_int64, ctypes.c_double
        ptr = (lambda x: x.ctypes.data_as(ctypes.c_void_p))
        lib.scipy_dstebz_64_(ctypes.c_char_p(b"I"), ctypes.c_char_p(b"B"), ctypes.byref(i64(n)), ctypes.byref(dbl(0.0)),
                             ctypes.byref(dbl(0.0)), ctypes.byref(i64(n - k + 1)), ctypes.byref(i64(n)),
                             ctypes.byref(dbl(abstol)), ptr(self.d), ptr(self.e), ptr(m), ptr(nsplit), ptr(w),
                             ptr(iblock), ptr(isplit), ptr(np.empty(4 * n)), ptr(np.empty(3 * n, dtype=np.int64)),
                             ctypes.byref(info), ctypes.c_size_t(1), ctypes.c_size_t(1))
        if info.value != 0 or int(m[0]) != k:
            raise np.linalg.LinAlgError(f"LAPACK dstebz found {int(m[0])} of {k} eigenvalues (info = {info.value})")


def tridiagonal(g: np.ndarray) -> Tridiagonal | None:
    """The :class:`Tridiagonal` reduction of the symmetric float64 matrix ``g``, made once and kept in
    ``g``'s memo (:mod:`lab.kernels.memo`) while ``g`` lives (so ``g`` must not be changed in place after
    it is solved: every Gram here is made, solved and dropped); None where numpy's OpenBLAS does not
    export the routines, or where ``g``'s magnitude is outside ``SAFE_MAGNITUDE`` or not finite."""
    if _openblas() is None or g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] == 0:
        return None
    memo = memo_for(g)
    t = memo.get("tridiagonal")
    if t is None:
        top = max(float(np.max(g)), -float(np.min(g)))
        if not np.isfinite(top) or (top != 0.0 and not SAFE_MAGNITUDE[0] <= top <= SAFE_MAGNITUDE[1]):
            return None
        memo["tridiagonal"] = t = Tridiagonal(g)
    return t


def psd_eigh(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues ascending, eigenvectors as columns) of a symmetric float64 matrix."""
    g = np.asarray(g, dtype=np.float64)
    if g.shape[0] >= TORCH_FROM:
        import torch

        w, v = torch.linalg.eigh(torch.from_numpy(g))
        return w.numpy(), v.numpy()
    with one_blas_thread():
        return np.linalg.eigh(g)


# A few leading eigenpairs of a large Gram come from Lanczos (ARPACK, converged to machine
# precision) at O(n²) per step instead of a full O(n³) eigendecomposition: the subspace overlaps
# need ΔW's top 16 directions and the intruder test the top 10 of W + ΔW, out of thousands.
LANCZOS_FROM = 512  # Gram size from which a few leading directions are solved partially
LANCZOS_FRACTION = 8  # ... when at most n / 8 of them are wanted
REDUCE_FRACTION = 64  # ... by a new tridiagonal reduction when at least n / 64 are wanted, else by Lanczos


def leading_eigh(g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues descending, eigenvectors as columns) of the k largest of a symmetric PSD
    matrix (all of them when k ≥ n); negatives from rounding clipped to 0.

    A few of a large matrix (n ≥ ``LANCZOS_FROM``, k ≤ n / ``LANCZOS_FRACTION``): from its tridiagonal
    reduction (:class:`Tridiagonal`: bisection and inverse iteration, then the reflectors), reused
    when :func:`psd_eigvals` already reduced the same matrix; where numpy's OpenBLAS does not export
    those LAPACK routines, by Lanczos (ARPACK, converged to machine precision).
    """
    g = np.asarray(g, dtype=np.float64)
    n = g.shape[0]
    k = max(int(k), 0)
    if n >= LANCZOS_FROM and 0 < k <= n // LANCZOS_FRACTION:
        with one_blas_thread():  # reduction, inverse iteration, matrix-vector products: one thread (see there)
            return _leading_partial(g, k)
    w, v = psd_eigh(g)
    w, v = np.clip(w[::-1], 0.0, None), v[:, ::-1]
    return (w[:k], v[:, :k]) if k < n else (w, v)


def _leading_partial(g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = g.shape[0]
    # a reduction kept from psd_eigvals costs nothing; a new one (~0.55 CPU s at n = 2048, one thread)
    # beats Lanczos from k ≈ n / 64 on (W's leading 64 of 2048: 0.60–0.70 s against 0.81–0.85 s),
    # not below (ΔW's top 16: 0.55–0.57 s against 0.45–0.54 s)
    t = tridiagonal(g) if k >= n // REDUCE_FRACTION else memo_for(g).get("tridiagonal")
    found = t.leading(k) if t is not None else None
    if found is not None:
        w, v = found
        return np.clip(w, 0.0, None), v
    from scipy.sparse.linalg import eigsh

    # a fixed start vector: the same directions (and signs) on every run and every worker
    v0 = np.random.default_rng([n, k]).standard_normal(n)
    w, v = eigsh(g, k=k, which="LA", tol=0.0, v0=v0)
    order = np.argsort(w)[::-1]
    return np.clip(w[order], 0.0, None), v[:, order]


# Accept Gram eigenvalues as singular values when the first-order bound on every σ's relative
# error, (√M + N)·ε·κ²/2 (Gram rounding ~√M·ε·σ₁², eigensolver ~N·ε·σ₁²), is below 5e-9.
_GRAM_RELATIVE_ERROR = 1e-8


def dense_singular_values(x: np.ndarray, gram_eigvals: np.ndarray | None = None) -> np.ndarray:
    """All min(rows, cols) singular values of a dense matrix, descending, in float64.

    A clearly rectangular matrix (aspect ≥ 2) goes through its small Gram matrix, σ_i = √λ_i, at
    about half the flops of an SVD, whenever its condition number κ is low enough for every σ to
    keep a relative accuracy of ~1e-8 (all σ are then far above the numerical-rank tolerance, so
    the numerical rank is exact too). Otherwise, and for square-ish matrices, numpy's SVD
    without vectors (LAPACK ?gesdd), accurate to ~ε·σ₁.

    ``gram_eigvals``: the eigenvalues (ascending) of the small-side Gram when they are already
    known (the entanglement profile's row|column cut solves exactly that matrix): then no new
    solve is needed at any aspect, under the same accuracy test.
    """
    x = np.asarray(x, dtype=np.float64)
    big, small = max(x.shape), min(x.shape)
    if small == 0:
        return np.zeros(0)
    x, top = rescaled(x)  # σ scale with x (top is 1.0 for ordinary magnitudes; memoised eigvals are only of those)
    if gram_eigvals is not None or big >= 2 * small:
        lam = (psd_eigvals(gram(x)) if gram_eigvals is None or top != 1.0 else np.clip(gram_eigvals, 0.0, None))[::-1]
        if lam[-1] >= lam[0] * (np.sqrt(big) + small) * np.finfo(np.float64).eps / _GRAM_RELATIVE_ERROR:
            return top * np.sqrt(lam)
    with one_blas_thread():  # ?gesdd's bidiagonalisation is half matrix-vector products, as dsytrd (see there)
        return top * np.linalg.svd(x, compute_uv=False)
