"""Matrices read in pieces: the ``MatrixSource`` protocol and its in-memory and computed sources.

A source stands for a rows×cols matrix M through its row-major flattening ψ = vec(M)
(ψ[i·cols + j] = M[i, j]). The one operation is

    read(starts, length) -> float64 array X of shape (len(starts), length),  X[t] = ψ[starts[t] : starts[t] + length],

so any block the kernels of :mod:`lab.kernels.blocked` need is a single call: a row block of M
reshaped (D_left, D_right) is a run of adjacent ranges, a column block is one range per row
(starts i·D_right + j0, length j1 − j0). Ranges never run past the end of ψ; they may span
several rows of M. The result is float64 whatever the stored dtype, so all arithmetic on it is
float64, and a block is the only part of M ever held.

Sources here:

* :class:`ArraySource`: an array in memory (tests, small matrices);
* :class:`DifferenceSource`: a − b elementwise (ΔW = W_ft − W_base from two sources);
* :class:`ScaledFactorsSource`: s·B·A, only the requested elements (O(r) work each), never the product;
* :class:`GaussianSource`: the seeded Gaussian control of :mod:`lab.kernels.controls`, generated
  piece by piece: ψ is cut into chunks of ``GAUSSIAN_CHUNK`` consecutive elements and chunk c is
  ``np.random.default_rng([seed, rows, cols, c]).standard_normal(size)`` (the last chunk shorter),
  so any range is produced exactly, by generating only the chunks it touches.

:class:`lab.checkpoints.ranges.TensorRanges` reads a tensor of a ``.safetensors`` file the same way.

Finiteness: every read is checked for NaN/inf as it streams past (one summation: a sum of
finite values can only overflow for entries beyond 1e300, which is checked elementwise); a
source's ``finite`` attribute turns False once anything it returned held NaN or inf, and stays
so. Sources never raise on NaN/inf themselves (a caller may want to look anyway); the kernels
of :mod:`lab.kernels.blocked` raise :class:`lab.errors.NonFiniteError` at the first non-finite
block, naming the file and tensor it came from (:meth:`BlockSource.culprit`), as the in-memory
probes raise for a non-finite array.

:func:`as_source` turns an array or factors into a source, so one kernel serves both.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from lab.deltas import Factors, Kron
from lab.errors import ShapeError

GAUSSIAN_CHUNK = 1 << 14  # elements per generator: ~5 % seeding overhead, ≤ 128 KiB regenerated per range


@runtime_checkable
class MatrixSource(Protocol):
    """A rows×cols matrix read as float64 ranges of its row-major flattening."""

    shape: tuple[int, int]
    name: str  # for messages: which file and tensor, or what was computed
    finite: bool  # False once a read returned NaN or inf

    @property
    def nbytes(self) -> int: ...

    def read(self, starts: np.ndarray, length: int) -> np.ndarray: ...


def runs(starts: np.ndarray, length: int) -> list[tuple[int, int]]:
    """(t0, t1) for each maximal run of ranges t0 … t1−1 that follow each other in ψ.

    Such a run is one contiguous interval ψ[starts[t0] : starts[t0] + (t1 − t0)·length] and fills
    rows t0:t1 of the output, which are contiguous too: one copy, one pread.
    """
    n = len(starts)
    if n == 0:
        return []
    breaks = np.flatnonzero(np.diff(starts) != length) + 1
    edges = [0, *breaks.tolist(), n]
    return list(zip(edges[:-1], edges[1:]))


def is_finite(block: np.ndarray) -> bool:
    """Whether a float64 block holds no NaN or inf (a sum, elementwise only when the sum overflows)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.add.reduce(block, axis=None)):
            return True
    return bool(np.isfinite(block).all())


class BlockSource:
    """The shared part of every source: argument checks, the finiteness record, ``nbytes``.

    Subclasses set ``shape`` and ``name`` and implement ``_fill(start, out)`` (the contiguous
    interval ψ[start : start + out.size] into the 1-D float64 ``out``) or override ``_read``.
    """

    shape: tuple[int, int]
    name: str
    finite: bool = True

    @property
    def size(self) -> int:
        return int(self.shape[0]) * int(self.shape[1])

    @property
    def nbytes(self) -> int:
        """The size of the whole matrix in float64 (what the blocked kernels never hold)."""
        return 8 * self.size

    def read(self, starts, length: int) -> np.ndarray:
        """X (len(starts) × length, float64) with X[t] = ψ[starts[t] : starts[t] + length]."""
        starts = np.asarray(starts, dtype=np.int64).reshape(-1)
        length = int(length)
        if length < 0:
            raise ValueError(f"{self.name}: negative range length {length}")
        if starts.size and (starts.min() < 0 or starts.max() + length > self.size):
            raise ValueError(f"{self.name}: ranges [{starts.min()}, {starts.max() + length}) leave ψ of size {self.size}")
        out = self._read(starts, length)
        if self.finite and not is_finite(out):
            self.finite = False
        return out

    def _read(self, starts: np.ndarray, length: int) -> np.ndarray:
        out = np.empty((starts.size, length), dtype=np.float64)
        for t0, t1 in runs(starts, length):
            self._fill(int(starts[t0]), out[t0:t1].reshape(-1))
        return out

    def _fill(self, start: int, out: np.ndarray) -> None:
        raise NotImplementedError

    def culprit(self) -> str:
        """The name of the source whose values were not finite (this one, or an operand of it)."""
        return self.name

    def to_array(self) -> np.ndarray:
        """The whole matrix as a float64 array (tests and small matrices only: rows·cols·8 bytes)."""
        return self.read(np.zeros(1, np.int64), self.size).reshape(self.shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


def _shape(shape) -> tuple[int, int]:
    rows, cols = (int(d) for d in shape)
    if rows < 0 or cols < 0:
        raise ValueError(f"matrix shape must be non-negative, got {shape}")
    return rows, cols


class ArraySource(BlockSource):
    """A source over a 2-D array in memory (any real dtype; blocks come back float64)."""

    def __init__(self, array: np.ndarray, name: str | None = None) -> None:
        array = np.asarray(array)
        if array.ndim != 2:
            raise ShapeError(f"a matrix source needs a 2-D array, got shape {array.shape}")
        self._flat = np.ascontiguousarray(array).reshape(-1)  # a view when already C-contiguous
        self.shape = _shape(array.shape)
        self.name = name or f"array {self.shape[0]}x{self.shape[1]}"

    def _fill(self, start: int, out: np.ndarray) -> None:
        out[...] = self._flat[start : start + out.size]


class DifferenceSource(BlockSource):
    """a − b elementwise, read block by block from both (ΔW = W_ft − W_base)."""

    def __init__(self, a: MatrixSource, b: MatrixSource, name: str | None = None) -> None:
        if tuple(a.shape) != tuple(b.shape):
            raise ShapeError(f"{a.name} {tuple(a.shape)} and {b.name} {tuple(b.shape)} differ in shape")
        self.a, self.b = a, b
        self.shape = _shape(a.shape)
        self.name = name or f"{a.name} minus {b.name}"

    def culprit(self) -> str:
        for operand in (self.a, self.b):
            if not operand.finite:
                return operand.culprit() if hasattr(operand, "culprit") else operand.name
        return self.name

    def _read(self, starts: np.ndarray, length: int) -> np.ndarray:
        out = self.a.read(starts, length)
        with np.errstate(invalid="ignore"):  # inf − inf: NaN, recorded by the finiteness check
            out -= self.b.read(starts, length)  # in place: the block and one operand, never three
        return out


class ScaledFactorsSource(BlockSource):
    """The elements of s·B·A computed on demand from the factors (r multiply-adds each).

    A range inside one row i is s·B[i]·A[:, j0:j1]; full rows are s·B[i0:i1]·A. The product is
    never formed beyond the rows a read touches.
    """

    def __init__(self, factors: Factors, name: str | None = None) -> None:
        self.factors = factors
        self.shape = _shape(factors.shape)
        self.name = name or f"factors {self.shape[0]}x{self.shape[1]} r{factors.rank_bound}"

    def _read(self, starts: np.ndarray, length: int) -> np.ndarray:
        cols = self.shape[1]
        row, col = np.divmod(starts, cols) if cols else (starts, starts)
        if starts.size and length and bool(np.all(col + length <= cols)):
            # every range inside one row (column blocks): one product per distinct column offset
            f, out = self.factors, np.empty((starts.size, length), dtype=np.float64)
            for c in np.unique(col):
                pick = col == c
                out[pick] = f.scale * (f.B[row[pick]] @ f.A[:, c : c + length])
            return out
        return super()._read(starts, length)

    def _fill(self, start: int, out: np.ndarray) -> None:
        f, cols = self.factors, self.shape[1]
        stop, pos = start + out.size, 0
        while start < stop:
            i, j = divmod(start, cols)
            if j == 0 and stop - start >= cols:  # whole rows at once
                n = (stop - start) // cols
                out[pos : pos + n * cols] = (f.scale * (f.B[i : i + n] @ f.A)).reshape(-1)
                start, pos = start + n * cols, pos + n * cols
            else:  # the partial row at either end
                j1 = min(cols, j + stop - start)
                out[pos : pos + j1 - j] = f.scale * (f.B[i] @ f.A[:, j:j1])
                start, pos = start + j1 - j, pos + j1 - j


class GaussianSource(BlockSource):
    """The seeded i.i.d. N(0, 1) control matrix, any part of it generated exactly on demand.

    ψ is cut into chunks of ``GAUSSIAN_CHUNK`` elements; chunk c is drawn by
    ``np.random.default_rng([seed, rows, cols, c]).standard_normal(n_c)``. A read generates each
    chunk it touches once (a one-chunk cache serves ranges that share a chunk), so reading the
    matrix in any blocks, or whole (:func:`lab.kernels.controls.gaussian_matrix`), gives the same numbers.
    """

    def __init__(self, rows: int, cols: int, seed: int = 0) -> None:
        self.shape = _shape((rows, cols))
        self.seed = int(seed)
        self.name = f"gaussian {self.shape[0]}x{self.shape[1]} seed {self.seed}"

    def _generator(self, chunk: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.shape[0], self.shape[1], int(chunk)])

    def _chunk_size(self, chunk: int) -> int:
        return min(GAUSSIAN_CHUNK, self.size - chunk * GAUSSIAN_CHUNK)

    def _read(self, starts: np.ndarray, length: int) -> np.ndarray:
        out = np.empty((starts.size, length), dtype=np.float64)
        cache: list = [-1, None]  # (chunk, its values): ranges in one chunk generate it once
        for t0, t1 in runs(starts, length):
            self._fill_cached(int(starts[t0]), out[t0:t1].reshape(-1), cache)
        return out

    def _fill_cached(self, start: int, out: np.ndarray, cache: list) -> None:
        stop, pos = start + out.size, 0
        while start < stop:
            c, a = divmod(start, GAUSSIAN_CHUNK)
            n = self._chunk_size(c)
            b = min(n, a + stop - start)
            if a == 0 and b == n:  # the whole chunk: straight into the output
                self._generator(c).standard_normal(out=out[pos : pos + n])
            else:
                if cache[0] != c:
                    cache[0], cache[1] = c, self._generator(c).standard_normal(n)
                out[pos : pos + b - a] = cache[1][a:b]
            start, pos = start + b - a, pos + b - a


def as_source(x, name: str | None = None) -> MatrixSource:
    """A MatrixSource for ``x``: a source as it is, Factors or a (B, A[, scale]) tuple as
    :class:`ScaledFactorsSource`, a 2-D array (or a Kron, multiplied out: LoKr's are adapter-sized)
    as :class:`ArraySource`."""
    if hasattr(x, "read") and not isinstance(x, (np.ndarray, Factors, Kron)):
        return x
    if isinstance(x, Kron):
        return ArraySource(x.to_dense(), name)
    if isinstance(x, tuple):
        x = Factors(*x)
    if isinstance(x, Factors):
        return ScaledFactorsSource(x, name)
    return ArraySource(np.asarray(x), name)
