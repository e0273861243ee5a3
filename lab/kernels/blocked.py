"""Probe kernels over a :class:`~lab.sources.MatrixSource`: Gram matrices accumulated block by block.

For matrices too large to hold in float64 (a 128256×2048 embedding is 2.1 GB), everything the
entanglement and spectra probes need is a small Gram matrix, and a Gram matrix is a sum over
blocks. With x = ψ reshaped (D_left, D_right) (ψ = vec(M), row-major):

* left Gram x·xᵀ = Σ_b x[:, J_b]·x[:, J_b]ᵀ over column blocks J_b of x: one ``read`` per block
  (starts i·D_right + j0 for every row i, length j1 − j0);
* right Gram xᵀ·x = Σ_b x[I_b]ᵀ·x[I_b] over row blocks I_b of x (contiguous ranges of ψ);
* cross Gram, for two matrices X, Y of one shape: XᵀY = Σ_b X[I_b]ᵀ Y[I_b] (tall, rows > cols,
  over row blocks of M) or X·Yᵀ = Σ_b X[:, J_b] Y[:, J_b]ᵀ (wide, over column blocks of M).

Each block is float64 and every product accumulates in float64, so the result equals the
in-memory product up to the order of summation (~1e-16 relative per entry). Only one block per
source (of at most ``budget_bytes`` of float64 data) and the Gram matrices are held.

What is built from them:

* :func:`schmidt_spectra_blocked`: the Schmidt coefficients at every cut, exactly as
  :func:`lab.kernels.schmidt.schmidt_spectra` computes them in memory: the largest left Gram and
  the first right Gram, accumulated here, then the same partial traces and eigensolves
  (:func:`lab.kernels.schmidt.cut_grams`, :func:`lab.kernels.schmidt.spectra_of_grams`).
* :func:`grams`: ΔWᵀΔW, WᵀW and ΔWᵀW (tall; ΔWΔWᵀ, WWᵀ, ΔWWᵀ wide) in one pass over both matrices;
  :func:`tuned_grams`: ΔW's, W's and W_ft = W + ΔW's Grams instead (two syrk per block, where the
  cross Gram is a general product of twice the flops), the implicit side's products then from a
  second pass (:func:`alignment_two_pass`), which the spectra probe uses.
* :func:`spectrum_from_gram` / :func:`spectrum_blocked`: σ_i = √λ_i of the small-side Gram.
* :func:`alignment_from_grams` / :func:`alignment_blocked`: what :func:`lab.probes.spectra.alignment`
  computes, from the three Grams alone. For a tall matrix the eigenvectors of MᵀM are the right
  singular vectors V and the left ones are implicit, U = M·V·Σ⁻¹, so

      U_Δᵀ·U_W = Σ_Δ⁻¹ V_Δᵀ (ΔWᵀW) V_W Σ_W⁻¹,

  and the left singular vectors y_j of W_ft = W + ΔW come from
  W_ftᵀW_ft = WᵀW + ΔWᵀW + (ΔWᵀW)ᵀ + ΔWᵀΔW, with

      cos(y_j, x_i) = σ_ft,j⁻¹ v_ft,jᵀ (W_ftᵀW) v_W,i σ_W,i⁻¹,   W_ftᵀW = WᵀW + ΔWᵀW,

  against every left singular vector x_i of W. A wide matrix is the mirror: the Gram
  eigenvectors are the left singular vectors (intruder cosines are plain inner products) and
  the right ones are implicit.

Accuracy: these are exact in exact arithmetic. In floating point an eigenvalue of a Gram matrix
carries an absolute error of about (√M + N)·ε·σ₁² (M, N the long and short side), so σ_i keeps a
relative accuracy of about (√M + N)·ε·κ_i²/2 with κ_i = σ₁/σ_i: 1e-8 or better while κ_i ≲ 1e3,
and every number read from a well-conditioned matrix matches the in-memory probes to that
level. Eigenvalues below that error, λ_i ≤ (√M + N)·ε·λ₁, carry no information and are set to
σ_i = 0 (the in-memory SVD would give σ_i ~ ε·σ₁ there). So the numerical rank of a blocked
spectrum counts σ_i > σ₁·√((√M + N)·ε) (≈ 1e-6·σ₁ for a 128256×2048 matrix), not σ₁·max(M, N)·ε:
exact for a matrix of exactly low rank, and for full-rank matrices whose σ are all resolved;
the implicit singular vectors and the alignment use only these resolved directions.

Non-finite input: every block read is checked; the first that holds NaN or inf raises
:class:`lab.errors.NonFiniteError` naming the source, as the in-memory probes raise for a
non-finite array.

Memory: ``budget_bytes`` (default ``DEFAULT_BUDGET``, 64 MiB) bounds the float64 data of the
blocks a kernel holds at once (:func:`grams` splits it between ΔW and W). On top come the Gram
matrices (N² float64 each, and one temporary of that size while a block is added in), the
source's own transients (a file's raw bytes; a :class:`~lab.sources.DifferenceSource`
holds its second operand's block while subtracting) and the eigensolver's workspace. A
:class:`~lab.sources.DifferenceSource` of at most ``HOLD_BYTES`` (256 MiB) of float64 (a full
fine-tune's ΔW of a 4096² or 8192×2048 module) is read whole at its second pass and kept for the
unit: up to ``HOLD_BYTES`` more, in exchange for reading and subtracting both files once or twice
instead of four or five times; blocks are copied out of it with the same partition, so every
Gram, norm and row is the same as when streamed.

Example::

    >>> import numpy as np
    >>> from lab.sources import ArraySource
    >>> m = np.random.default_rng(0).standard_normal((300, 8))
    >>> g = gram_right(ArraySource(m), 8, budget_bytes=4096)  # 64 rows per block
    >>> bool(np.allclose(g, m.T @ m))
    True
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from lab.errors import NonFiniteError, ShapeError
from lab.kernels import schmidt, subspaces
from lab.kernels.linalg import in_lanes, leading_eigh, psd_eigvals
from lab.kernels.memo import memo_for
from lab.kernels.spectrum import Alignment, Spectrum
from lab.kernels.tensorize import Sites, sites as chain_sites
from lab.sources import MatrixSource

DEFAULT_BUDGET = 64 << 20  # bytes of float64 block data per kernel: ~4096 rows of a 2048-wide matrix

_EPS = float(np.finfo(np.float64).eps)


# ---- reading -------------------------------------------------------------------------------------

def _checked(src: MatrixSource, starts: np.ndarray, length: int) -> np.ndarray:
    """A block of ``src``, or NonFiniteError once anything read from it held NaN or inf."""
    block = src.read(starts, length)
    if not src.finite:
        _nonfinite(src)
    return block


def _nonfinite(src: MatrixSource):
    name = src.culprit() if hasattr(src, "culprit") else src.name
    raise NonFiniteError(f"{name} holds NaN/inf value(s); pass --allow-nonfinite to analyse it anyway")


# A streamed ΔW = W_ft − W (two files) that fits this many bytes of float64 is kept whole from its second
# pass on: the profile's two Grams, ‖ΔW‖_F and the spectra pass would otherwise read and subtract both files
# four or five times. Blocks are then copied out of it with the same partition, so every result is the same.
HOLD_BYTES = 256 << 20


class _Held:
    """ψ of a source read whole once; ``read`` copies blocks out of it (a MatrixSource).

    It lives in the source's memo, so it refers to the source weakly: a strong reference would keep the
    source, hence its memo and ψ, alive for the whole process (a module's held ΔW per unit, ~0.5 GB a
    layer of the 1B pair)."""

    def __init__(self, src: MatrixSource, psi: np.ndarray) -> None:
        self._src, self.psi = weakref.ref(src), psi
        self.shape, self.name, self.nbytes = src.shape, src.name, src.nbytes

    @property
    def src(self) -> MatrixSource:
        src = self._src()
        if src is None:  # the memo dies with its source; a _Held outliving it is a bug
            raise RuntimeError(f"{self.name}: the held matrix outlived its source")
        return src

    @property
    def finite(self) -> bool:
        return self.src.finite

    def culprit(self) -> str:
        return self.src.culprit() if hasattr(self.src, "culprit") else self.src.name

    def read(self, starts: np.ndarray, length: int) -> np.ndarray:
        starts = np.asarray(starts, dtype=np.int64).reshape(-1)
        out = np.empty((starts.size, int(length)), dtype=np.float64)
        step = int(starts[1] - starts[0]) if starts.size > 1 else 0
        if starts.size > 1 and step > 0 and bool(np.all(np.diff(starts) == step)):
            view = np.lib.stride_tricks.as_strided(self.psi[int(starts[0]):], shape=out.shape,
                                                   strides=(8 * step, 8), writeable=False)
            out[...] = view
        else:
            for t, a in enumerate(starts.tolist()):
                out[t] = self.psi[a:a + int(length)]
        return out


def _reader(src: MatrixSource):
    """What a kernel's pass reads ``src`` through: ``src`` itself, or from its second pass on, for a
    file-backed difference of at most ``HOLD_BYTES`` of float64, its ψ read whole once (kept in its memo)."""
    from lab.sources import DifferenceSource, ScaledFactorsSource

    memo = _memo(src)
    held = memo.get("held")
    if held is not None:
        return held
    memo["passes"] = memo.get("passes", 0) + 1
    if (memo["passes"] >= 2 and isinstance(src, DifferenceSource) and src.nbytes <= HOLD_BYTES
            and not any(isinstance(x, ScaledFactorsSource) for x in (src.a, src.b))):
        size = int(src.shape[0]) * int(src.shape[1])
        memo["held"] = held = _Held(src, src.read(np.zeros(1, dtype=np.int64), size).reshape(-1))
        return held
    return src


def _lines(budget_bytes: int, line: int) -> int:
    """How many lines of ``line`` float64 values fit in the budget (at least one)."""
    return max(1, int(budget_bytes) // (8 * max(1, int(line))))


def _row_blocks(d_left: int, d_right: int, budget_bytes: int) -> Iterator[tuple[np.ndarray, int]]:
    """(starts, length) of row blocks of ψ reshaped (d_left, d_right): contiguous in ψ."""
    h = _lines(budget_bytes, d_right)
    for i0 in range(0, d_left, h):
        yield np.arange(i0, min(d_left, i0 + h), dtype=np.int64) * d_right, d_right


def _col_blocks(d_left: int, d_right: int, budget_bytes: int) -> Iterator[tuple[np.ndarray, int]]:
    """(starts, length) of column blocks of ψ reshaped (d_left, d_right): one range per row."""
    w = _lines(budget_bytes, d_left)
    rows = np.arange(d_left, dtype=np.int64) * d_right
    for j0 in range(0, d_right, w):
        yield rows + j0, min(d_right, j0 + w) - j0


def _split(src: MatrixSource, d: int, side: str) -> tuple[int, int]:
    rows, cols = (int(n) for n in src.shape)
    total = rows * cols
    if d <= 0 or total % d:
        raise ValueError(f"{src.name}: {side} dimension {d} does not divide {rows}x{cols}")
    return (d, total // d) if side == "left" else (total // d, d)


def _add(acc: np.ndarray | None, term: np.ndarray) -> np.ndarray:
    if acc is None:
        return term  # the first block: no zeros to add to, and no temporary
    acc += term
    return acc


# ---- Gram matrices -------------------------------------------------------------------------------

def _memo(src: MatrixSource) -> dict:
    """Results kept for the other probes of the same unit (:mod:`lab.kernels.memo`): ΔW's small-side
    Gram and its eigenvalues, read and solved once for the entanglement and spectra probes."""
    return memo_for(src)


def _is_small_side(src: MatrixSource, side: str, d: int) -> bool:
    rows, cols = (int(n) for n in src.shape)
    return (side == "right" and rows > cols and d == cols) or (side == "left" and rows <= cols and d == rows)


def gram_left(src: MatrixSource, d_left: int, budget_bytes: int = DEFAULT_BUDGET) -> np.ndarray:
    """x·xᵀ (d_left × d_left, float64) for x = ψ reshaped (d_left, D_right), over column blocks of x."""
    if _is_small_side(src, "left", int(d_left)) and "small" in _memo(src):
        return _memo(src)["small"]
    d_left, d_right = _split(src, int(d_left), "left")
    g, reader = None, _reader(src)
    for starts, length in _col_blocks(d_left, d_right, budget_bytes):
        block = _checked(reader, starts, length)
        g = _add(g, block @ block.T)  # numpy hands x @ x.T to BLAS ?syrk
        del block  # before the next read: one block in memory, not two
    g = g if g is not None else np.zeros((d_left, d_left))
    if _is_small_side(src, "left", d_left):
        _memo(src)["small"] = g
    return g


def gram_right(src: MatrixSource, d_right: int, budget_bytes: int = DEFAULT_BUDGET) -> np.ndarray:
    """xᵀ·x (d_right × d_right, float64) for x = ψ reshaped (D_left, d_right), over row blocks of x."""
    if _is_small_side(src, "right", int(d_right)) and "small" in _memo(src):
        return _memo(src)["small"]
    d_left, d_right = _split(src, int(d_right), "right")
    g, reader = None, _reader(src)
    for starts, length in _row_blocks(d_left, d_right, budget_bytes):
        block = _checked(reader, starts, length)
        g = _add(g, block.T @ block)
        del block
    g = g if g is not None else np.zeros((d_right, d_right))
    if _is_small_side(src, "right", d_right):
        _memo(src)["small"] = g
    return g


def small_eigvals(src: MatrixSource, gram: np.ndarray) -> np.ndarray:
    """psd_eigvals of ``gram``, solved once per source when it is the source's small-side Gram."""
    memo = _memo(src)
    if memo.get("small") is gram:
        if "small_eigvals" not in memo:
            memo["small_eigvals"] = psd_eigvals(gram)
        return memo["small_eigvals"]
    return psd_eigvals(gram)


def small_gram(src: MatrixSource, budget_bytes: int = DEFAULT_BUDGET) -> np.ndarray:
    """MᵀM (rows > cols) or M·Mᵀ (rows ≤ cols; for a square matrix the one the profile's row|column cut also needs): the Gram matrix of M's smaller side."""
    rows, cols = (int(n) for n in src.shape)
    return gram_right(src, cols, budget_bytes) if rows > cols else gram_left(src, rows, budget_bytes)


@dataclass(frozen=True)
class Grams:
    """ΔW's, W's and the cross Gram on the smaller side of one rows×cols shape.

    Tall (rows > cols): ``delta`` = ΔWᵀΔW, ``base`` = WᵀW, ``cross`` = ΔWᵀW (cols × cols).
    Wide: ``delta`` = ΔW·ΔWᵀ, ``base`` = W·Wᵀ, ``cross`` = ΔW·Wᵀ (rows × rows).
    ``base`` and ``cross`` are None without a base.
    """

    rows: int
    cols: int
    delta: np.ndarray
    base: np.ndarray | None = None
    cross: np.ndarray | None = None
    tuned: np.ndarray | None = None  # W_ft = W + ΔW's Gram, from :func:`tuned_grams` (then ``cross`` is None)

    @property
    def tall(self) -> bool:
        return self.rows > self.cols

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)


def _blocks_of(shape: tuple[int, int], budget_bytes: int) -> Iterator[tuple[np.ndarray, int]]:
    """Blocks of M itself: rows for a tall matrix, columns for a wide one."""
    rows, cols = shape
    return _row_blocks(rows, cols, budget_bytes) if rows > cols else _col_blocks(rows, cols, budget_bytes)


def grams(delta_src: MatrixSource, base_src: MatrixSource | None = None,
          budget_bytes: int = DEFAULT_BUDGET) -> Grams:
    """ΔW's Gram, and with a base W's and the cross ΔWᵀW (tall) or ΔW·Wᵀ (wide), in one pass.

    Each block of ΔW and of W is read once and added into all three. The budget is shared
    between the two sources.
    """
    rows, cols = (int(n) for n in delta_src.shape)
    if base_src is not None and tuple(base_src.shape) != (rows, cols):
        raise ShapeError(f"{delta_src.name} {(rows, cols)} and {base_src.name} {tuple(base_src.shape)} differ in shape")
    tall = rows > cols
    known = _memo(delta_src).get("small")  # ΔW's own Gram, when the entanglement probe already made it
    if known is not None and base_src is None:
        return Grams(rows, cols, known)
    per_source = int(budget_bytes) // (1 if base_src is None else 2)
    g_d = g_w = g_c = None
    d_reader = _reader(delta_src)
    for starts, length in _blocks_of((rows, cols), per_source):
        d = _checked(d_reader, starts, length)
        if tall:
            d = d.T  # the block's columns are M's: Grams of the transpose, still syrk
        if known is None:
            g_d = _add(g_d, d @ d.T)
        if base_src is not None:
            w = _checked(base_src, starts, length)
            if tall:
                w = w.T
            g_w = _add(g_w, w @ w.T)
            g_c = _add(g_c, d @ w.T)
            del w
        del d
    n = cols if tall else rows
    empty = np.zeros((n, n))
    if known is not None:
        g_d = known
    elif g_d is not None:
        _memo(delta_src)["small"] = g_d
    if base_src is None:
        return Grams(rows, cols, g_d if g_d is not None else empty)
    return Grams(rows, cols, g_d if g_d is not None else empty, g_w if g_w is not None else empty.copy(),
                 g_c if g_c is not None else empty.copy())


def tuned_grams(delta_src: MatrixSource, base_src: MatrixSource, budget_bytes: int = DEFAULT_BUDGET) -> Grams:
    """ΔW's, W's and W_ft = W + ΔW's small-side Grams in one pass (``tuned`` set, ``cross`` None).

    Per block two symmetric rank-k updates (W's, and W_ft's of the block's sum) where :func:`grams`
    makes one and the general product ΔWᵀW of twice the flops; what the cross Gram gave
    :func:`alignment_from_grams` comes from a second, cheap pass (:func:`alignment_two_pass`).
    ΔW's own Gram is accumulated only when the entanglement probe did not leave it.
    """
    rows, cols = (int(n) for n in delta_src.shape)
    if tuple(base_src.shape) != (rows, cols):
        raise ShapeError(f"{delta_src.name} {(rows, cols)} and {base_src.name} {tuple(base_src.shape)} differ in shape")
    tall = rows > cols
    known = _memo(delta_src).get("small")
    g_d = g_w = g_t = None
    d_reader = _reader(delta_src)
    for starts, length in _blocks_of((rows, cols), int(budget_bytes) // 2):
        d = _checked(d_reader, starts, length)
        w = _checked(base_src, starts, length)
        if tall:
            d, w = d.T, w.T  # the block's columns are M's: Grams of the transpose, still syrk
        if known is None:
            g_d = _add(g_d, d @ d.T)
        g_w = _add(g_w, w @ w.T)
        t = w + d
        del d, w
        g_t = _add(g_t, t @ t.T)
        del t
    n = cols if tall else rows
    if known is not None:
        g_d = known
    elif g_d is not None:
        _memo(delta_src)["small"] = g_d
    empty = np.zeros((n, n))
    return Grams(rows, cols, g_d if g_d is not None else empty, g_w if g_w is not None else empty.copy(),
                 None, g_t if g_t is not None else empty.copy())


def _projected(delta_src: MatrixSource, base_src: MatrixSource, e_d: np.ndarray, e_w: np.ndarray,
               e_t: np.ndarray | None, budget_bytes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """One pass over ΔW and W: (E_Δᵀ ΔWᵀ W E_W, (W_ft E_t)ᵀ W) for a tall matrix (E the small side's
    Gram eigenvectors), (E_Δᵀ ΔW Wᵀ E_W, None) for a wide one; ``e_t`` None: no second term."""
    rows, cols = (int(n) for n in delta_src.shape)
    tall = rows > cols
    f = c = None
    d_reader = _reader(delta_src)
    for starts, length in _blocks_of((rows, cols), int(budget_bytes) // 2):
        d = _checked(d_reader, starts, length)
        w = _checked(base_src, starts, length)
        if tall:  # rows of M: ΔW_I E_Δ, W_I E_W, (W_I + ΔW_I) E_t
            pw = w @ e_w
            f = _add(f, (d @ e_d).T @ pw)
            if e_t is not None:
                c = _add(c, (w @ e_t + d @ e_t).T @ w)
        else:  # columns of M: E_Δᵀ ΔW_J, E_Wᵀ W_J
            f = _add(f, (e_d.T @ d) @ (e_w.T @ w).T)
        del d, w
    f = f if f is not None else np.zeros((e_d.shape[1], e_w.shape[1]))
    if tall and e_t is not None and c is None:
        c = np.zeros((e_t.shape[1], cols))
    return f, c


def _delta_and_base_directions(g: Grams, numerical_rank: int | None, top_k: int, intruder_reference: int | None,
                               tuned_top: int | None = None):
    """(k, ΔW's top-k σ and Gram eigenvectors, how many of W's are led, W's leading σ and eigenvectors) for both
    alignment routes: k = min(top_k, numerical rank of ΔW (that of :func:`spectrum_from_gram` when None)); W's
    leading directions serve the overlaps and, when they certify the max-cosines (see lab.kernels.subspaces),
    the intruders, or all of them (the reference count, when set, is among the leading). With ``tuned_top``,
    W + ΔW's leading σ and eigenvectors (from ``g.tuned``) follow. The solves are independent: they run on
    two one-thread lanes (:func:`lab.kernels.linalg.in_lanes`), W's reduction beside W + ΔW's Lanczos."""
    shape = g.shape
    if numerical_rank is None:
        numerical_rank = spectrum_from_gram(g.delta, shape).numerical_rank
    k = min(int(top_k), int(numerical_rank))
    lead = (subspaces.leading_for_certificate(g.base.shape[0], k) if intruder_reference is None
            else max(k, int(intruder_reference)))
    tasks = [lambda: _directions(g.delta, shape, k), lambda: _directions(g.base, shape, lead)]
    if tuned_top is not None:
        tasks.append(lambda: _directions(g.tuned, shape, tuned_top))
    for m in (g.delta, g.base, g.tuned):
        if m is not None:
            memo_for(m)  # each matrix's memo made here, not raced for on the lanes
    (s_d, e_d), (s_w, e_w), *tuned = in_lanes(tasks)
    return (k, s_d, e_d, lead, s_w, e_w, *tuned)


def alignment_two_pass(g: Grams, delta_src: MatrixSource, base_src: MatrixSource, numerical_rank: int | None = None,
                       budget_bytes: int = DEFAULT_BUDGET, *, top_k: int, intruder_top: int, intruder_threshold: float,
                       intruder_reference: int | None) -> Alignment:
    """:func:`alignment_from_grams` from the Grams of :func:`tuned_grams` (W_ft's Gram formed, no cross
    Gram) and one more pass over ΔW and W for the implicit side's products.

    The same quantities: with E the Grams' eigenvectors and Σ their σ, the implicit side's overlap
    Σ_Δ⁻¹ E_Δᵀ (ΔWᵀW) E_W Σ_W⁻¹ = Σ_Δ⁻¹ (ΔW E_Δ)ᵀ (W E_W) Σ_W⁻¹ (tall; wide: (E_Δᵀ ΔW)(E_Wᵀ W)ᵀ),
    and for a tall matrix the intruder cosines σ_ft⁻¹ (W_ft v_ft)ᵀ W v_W σ_W⁻¹ with
    (W_ft v_ft)ᵀ W accumulated once (k × cols), so all of W's directions cost no further pass when
    the leading ones do not certify the maximum. Equal to :func:`alignment_from_grams` up to rounding.
    """
    if g.base is None or g.tuned is None:
        raise ValueError("alignment_two_pass needs W's and W + ΔW's Grams: call tuned_grams(delta_src, base_src)")
    shape = g.shape
    k, s_d, e_d, lead, s_w, e_w, (s_t, e_t) = _delta_and_base_directions(g, numerical_rank, top_k, intruder_reference,
                                                                         intruder_top)
    kw = min(k, s_w.size)
    f, c = _projected(delta_src, base_src, e_d, e_w[:, :kw], e_t if g.tall else None, budget_bytes)
    near = e_d.T @ e_w[:, :kw]
    far = f / s_d[:, None] / s_w[None, :kw]
    overlap_right, overlap_left = (_overlap(near), _overlap(far)) if g.tall else (_overlap(far), _overlap(near))

    def cosines(s_ref, e_ref):
        if g.tall:  # y_jᵀx_i = σ_ft,j⁻¹ (W_ft v_ft,j)ᵀ W v_W,i σ_W,i⁻¹
            return (c @ e_ref) / s_t[:, None] / s_ref[None, :]
        return e_t.T @ e_ref

    return _with_intruders(g, k, overlap_left, overlap_right, s_t, s_w, e_w, lead, cosines, intruder_top,
                           intruder_threshold, intruder_reference)


def cross_gram(x_src: MatrixSource, y_src: MatrixSource, budget_bytes: int = DEFAULT_BUDGET) -> np.ndarray:
    """XᵀY (cols × cols) for tall matrices (rows ≥ cols), X·Yᵀ (rows × rows) for wide ones, in one pass."""
    rows, cols = (int(n) for n in x_src.shape)
    if tuple(y_src.shape) != (rows, cols):
        raise ShapeError(f"{x_src.name} {(rows, cols)} and {y_src.name} {tuple(y_src.shape)} differ in shape")
    tall = rows > cols
    g = None
    for starts, length in _blocks_of((rows, cols), int(budget_bytes) // 2):
        x, y = _checked(x_src, starts, length), _checked(y_src, starts, length)
        g = _add(g, x.T @ y if tall else x @ y.T)
        del x, y
    n = cols if tall else rows
    return g if g is not None else np.zeros((n, n))


def _flat_blocks(src: MatrixSource, budget_bytes: int) -> Iterator[np.ndarray]:
    size = int(src.shape[0]) * int(src.shape[1])
    step = _lines(budget_bytes, 1)
    for p in range(0, size, step):
        yield src.read(np.array([p], dtype=np.int64), min(step, size - p)).reshape(-1)


def fro_norm_blocked(src: MatrixSource, budget_bytes: int = DEFAULT_BUDGET) -> float:
    """‖M‖_F, accumulated in float64 over contiguous blocks (NonFiniteError for NaN/inf)."""
    total = 0.0
    for block in _flat_blocks(_reader(src), budget_bytes):
        if not src.finite:
            _nonfinite(src)
        total += float(block @ block)
        del block
    return float(np.sqrt(total))


def all_finite(src: MatrixSource, budget_bytes: int = DEFAULT_BUDGET) -> bool:
    """Whether every entry of M is finite, read through once (stops at the first NaN/inf block)."""
    if not src.finite:
        return False
    for block in _flat_blocks(src, budget_bytes):
        del block  # only its finiteness, recorded by the source, is wanted
        if not src.finite:
            return False
    return True


# ---- Schmidt spectra -----------------------------------------------------------------------------

def schmidt_spectra_blocked(src: MatrixSource, sites: Sites | None = None,
                            budget_bytes: int = DEFAULT_BUDGET) -> list[np.ndarray]:
    """The Schmidt coefficients p_i (Σ p_i = 1, unsorted) at cuts 1 … N−1, as :func:`lab.kernels.schmidt.schmidt_spectra`.

    Two passes over the source: the largest left Gram over column blocks, the first right Gram
    over row blocks; the other cuts are their partial traces. A zero matrix gives NaN;
    NaN/inf entries raise NonFiniteError. ``sites`` defaults to the prime factors of the shape.
    """
    rows, cols = (int(n) for n in src.shape)
    st = sites if sites is not None else chain_sites(rows, cols)
    if int(np.prod(st.dims, dtype=np.int64)) != rows * cols:
        raise ValueError(f"sites {st.dims} do not multiply to {rows}x{cols}")
    by_cut = schmidt.cut_grams(st, lambda d: gram_left(src, d, budget_bytes), lambda d: gram_right(src, d, budget_bytes))
    # the row|column cut's Gram is M's small-side Gram (M·Mᵀ or MᵀM) even when it is a partial trace of
    # a larger one (a 2048×8192 matrix's central cut is 4096 wide): remembered, so that the spectra
    # probe's pass (grams) neither accumulates it again nor solves it again
    valley = schmidt.valley_index(st, rows)
    memo = _memo(src)
    if valley is not None and valley in by_cut and "small" not in memo:
        memo["small"] = by_cut[valley]
    return schmidt.spectra_of_grams(by_cut, lambda g: small_eigvals(src, g))


# ---- spectra and alignment -----------------------------------------------------------------------

def _floor(lam_max: float, shape: tuple[int, int]) -> float:
    """The absolute error of a Gram eigenvalue, (√M + N)·ε·λ₁: below it an eigenvalue is noise."""
    long, short = max(shape), min(shape)
    return max(lam_max, 0.0) * (np.sqrt(long) + short) * _EPS


def _resolved(lam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Eigenvalues (descending) with the unresolved ones set to 0."""
    if not lam.size:
        return lam
    return np.where(lam > _floor(float(lam[0]), shape), lam, 0.0)


def spectrum_from_gram(gram: np.ndarray, shape: tuple[int, int], rank_bound: int | None = None,
                       eigvals: np.ndarray | None = None) -> Spectrum:
    """The :class:`~lab.kernels.spectrum.Spectrum` of a rows×cols matrix from its small-side Gram matrix.

    σ_i = √λ_i (descending) with λ_i below the Gram's rounding, (√M + N)·ε·λ₁, set to 0 (see the
    module notes). ``rank_bound`` defaults to min(rows, cols). ``eigvals``: the Gram's eigenvalues
    (ascending) when already solved.
    """
    rows, cols = (int(n) for n in shape)
    lam = _resolved((psd_eigvals(gram) if eigvals is None else eigvals)[::-1], (rows, cols))
    rank_bound = min(rows, cols) if rank_bound is None else int(rank_bound)
    return Spectrum(rows, cols, rank_bound, np.sqrt(lam))


def spectrum_blocked(src: MatrixSource, rank_bound: int | None = None, budget_bytes: int = DEFAULT_BUDGET) -> Spectrum:
    """The :class:`~lab.kernels.spectrum.Spectrum` of a streamed matrix, from its small-side Gram (one pass)."""
    gram = small_gram(src, budget_bytes)
    return spectrum_from_gram(gram, src.shape, rank_bound, small_eigvals(src, gram))


def _directions(gram: np.ndarray, shape: tuple[int, int], k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(σ descending, eigenvectors as columns) of the leading k resolved directions (all when None)."""
    n_all = gram.shape[0]
    w, v = leading_eigh(gram, n_all if k is None else min(int(k), n_all))
    n = int((_resolved(w, shape) > 0.0).sum())
    n = n if k is None else min(n, max(int(k), 0))
    return np.sqrt(w[:n]), v[:, :n]


def _overlap(cos: np.ndarray) -> float:
    """Mean squared principal-angle cosine from the k₁×k₂ matrix of cosines between two bases."""
    k = min(cos.shape)
    return float((cos ** 2).sum() / k) if k else float("nan")


def alignment_from_grams(g: Grams, numerical_rank: int | None = None, *, top_k: int, intruder_top: int,
                         intruder_threshold: float, intruder_reference: int | None) -> Alignment:
    """The :class:`~lab.kernels.spectrum.Alignment` of ΔW with W from the three Grams of :func:`grams`.

    Same definitions as :func:`lab.probes.spectra.alignment` (k = min(top_k, numerical rank of
    ΔW); intruders among the top ``intruder_top`` left singular vectors of W + ΔW against all of
    W's (``intruder_reference`` None), or the leading ``intruder_reference``; an intruder's largest
    |cos| is below ``intruder_threshold``), with singular vectors from the Grams' eigenvectors and
    the other side implicit (module notes). ``numerical_rank`` defaults to that of
    :func:`spectrum_from_gram` of ΔW. The spectra probe passes its options' values
    (:func:`lab.probes.spectra.alignment_numbers`).
    """
    if g.base is None or g.cross is None:
        raise ValueError("alignment needs the base's Gram and the cross Gram: call grams(delta_src, base_src)")
    shape = g.shape
    k, s_d, e_d, lead, s_w, e_w = _delta_and_base_directions(g, numerical_rank, top_k, intruder_reference)

    # explicit side: the Gram eigenvectors themselves; implicit side: Σ_Δ⁻¹ E_Δᵀ C E_W Σ_W⁻¹
    kw = min(k, s_w.size)
    near = e_d.T @ e_w[:, :kw]
    far = (e_d.T @ g.cross @ e_w[:, :kw]) / s_d[:, None] / s_w[None, :kw]
    overlap_right, overlap_left = (_overlap(near), _overlap(far)) if g.tall else (_overlap(far), _overlap(near))

    # intruders: left singular vectors of W_ft = W + ΔW against W's
    tuned = g.base + g.cross + g.cross.T + g.delta
    s_t, e_t = _directions(tuned, shape, intruder_top)

    def cosines(s_ref, e_ref):
        if g.tall:  # left vectors implicit: y_jᵀx_i = σ_ft,j⁻¹ v_ft,jᵀ (WᵀW + ΔWᵀW) v_W,i σ_W,i⁻¹
            return (e_t.T @ (g.base + g.cross) @ e_ref) / s_t[:, None] / s_ref[None, :]
        return e_t.T @ e_ref  # left vectors are the eigenvectors: unit columns already

    return _with_intruders(g, k, overlap_left, overlap_right, s_t, s_w, e_w, lead, cosines, intruder_top,
                           intruder_threshold, intruder_reference)


def _with_intruders(g: Grams, k: int, overlap_left: float, overlap_right: float, s_t: np.ndarray, s_w: np.ndarray,
                    e_w: np.ndarray, lead: int | None, cosines, intruder_top: int, intruder_threshold: float,
                    intruder_reference: int | None) -> Alignment:
    """The Alignment of both alignment routes: their overlaps, and the intruder count and smallest max-cosine
    of W + ΔW's top vectors (``s_t``) from ``cosines(s_ref, e_ref)`` against W's leading directions, or against
    all of W's (computed only when the leading ones do not decide) when ``intruder_reference`` is None."""
    shape = g.shape
    everything = intruder_reference is None
    n_ref = s_w.size if everything else min(s_w.size, int(intruder_reference))
    if s_t.size == 0 or n_ref == 0:
        count, min_cos = 0, float("nan")
    else:
        if everything:
            complete = lead is None or s_w.size < lead
            best = subspaces.max_cosines_over_all(cosines(s_w, e_w), complete, lambda: cosines(*_directions(g.base, shape)))
        else:
            best = np.abs(cosines(s_w[:n_ref], e_w[:, :n_ref])).max(axis=1)
        count, min_cos = subspaces.intruder_summary(best, intruder_threshold)
    return Alignment(
        k=k,
        overlap_left=overlap_left,
        overlap_right=overlap_right,
        intruder_top=min(int(intruder_top), min(shape)),
        intruder_threshold=float(intruder_threshold),
        intruder_count=count,
        intruder_min_cos=min_cos,
    )


def alignment_blocked(delta_src: MatrixSource, base_src: MatrixSource, numerical_rank: int | None = None,
                      budget_bytes: int = DEFAULT_BUDGET, *, top_k: int, intruder_top: int,
                      intruder_threshold: float, intruder_reference: int | None) -> Alignment:
    """The :class:`~lab.kernels.spectrum.Alignment` of a streamed ΔW with a streamed W (two passes over
    both: :func:`tuned_grams`, then :func:`alignment_two_pass`); the numbers as in :func:`alignment_from_grams`.

    To get ΔW's spectrum from the same pass, call :func:`tuned_grams` once and pass its ``delta`` to
    :func:`spectrum_from_gram` and the Grams to :func:`alignment_two_pass`.
    """
    return alignment_two_pass(tuned_grams(delta_src, base_src, budget_bytes), delta_src, base_src, numerical_rank,
                              budget_bytes, top_k=top_k, intruder_top=intruder_top,
                              intruder_threshold=intruder_threshold, intruder_reference=intruder_reference)
