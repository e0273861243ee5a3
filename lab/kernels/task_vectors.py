"""Task-vector merges on dense updates, in row blocks: task arithmetic, magnitude pruning, TIES, DARE.

Input j is a task vector τ_j (m×n): a LoRA update s_j·B_j·A_j held as factors L_j·R_j (formed a
row block at a time, or whole when the J updates together fit one block) or a dense full-fine-tune difference W_j − W_0; weights w_j.
The exact weighted sum is T = Σ_j w_j·τ_j. The definitions are PEFT's (``peft/utils/merge_utils.py``,
peft 0.21, the functions its ``add_weighted_adapter(..., combination_type="<method>_svd")`` applies
to each module's ``get_delta_weight``):

* ``task_arithmetic``: M = Σ_j w_j·τ_j = T.
* ``magnitude_prune``: M = Σ_j w_j·trim_d(τ_j), trim_d keeping the ⌊d·m·n⌋ entries of τ_j of largest
  magnitude (PEFT's ``magnitude_based_pruning``: ``topk`` of |τ_j| over the whole tensor).
* ``ties`` (Yadav et al. 2023, "TIES-Merging"): τ̂_j = trim_d(τ_j); elected sign
  σ = +1 where Σ_j τ̂_j ≥ 0, −1 elsewhere (PEFT's ``majority_sign_method="total"``: the sign of the
  sum of the trimmed, unweighted vectors); disjoint mean
  M = Σ_j w_j·τ̂_j·[sign τ̂_j = σ] / max(1, #{j : sign τ̂_j = σ}) (the weights enter after the
  election, as in PEFT; an entry trimmed to 0 has sign 0 and agrees with no σ).
* ``dare_linear`` (Yu et al. 2023, "Language Models are Super Mario"): τ̃_j = mask_j∘τ_j / d with
  mask_j i.i.d. Bernoulli(d) (PEFT's ``random_pruning(..., rescale=True)``); M = Σ_j w_j·τ̃_j.
* ``dare_ties``: τ̃_j as in DARE, then TIES' election and disjoint mean.

Density d ≥ 1 trims and drops nothing (PEFT warns and returns the tensor). Two choices where the
definitions leave room, both measure-zero for real weights: trim_d keeps every entry with
|x| ≥ t, t the ⌊d·m·n⌋-th largest magnitude found by exact radix selection on float64 bit patterns
over row blocks (``topk`` keeps an arbitrary ⌊d·m·n⌋ of entries tied at t); and DARE's masks are
``torch.bernoulli`` of a float32 tensor full of d (as PEFT draws them for a float32 model), from a
``torch.Generator`` that the caller seeds once per merge, each τ_j's mask drawn whole (row block
after row block: the same draws as one call; kept as bools, or packed one bit an entry when the
update is streamed), in the order the caller passes the modules and inputs. ``torch.manual_seed(seed)`` right before PEFT's merge loop
then draws the same masks when PEFT visits the same modules in the same order. A float64 model
draws different masks in PEFT (the Bernoulli sampler consumes the generator per dtype).

The masks are torch's draws without torch's serial Bernoulli loop (~13 ns an entry): torch's CPU
generator is the standard MT19937 (``aten/src/ATen/core/MT19937RNGEngine.h``; ``manual_seed`` is
``init_genrand`` of the seed's low 32 bits), and ``torch.bernoulli`` of a float32 p takes one 32-bit
output y per entry, in order, keeping the entry iff (y & 0xFFFFFF)·2⁻²⁴ < p
(``DistributionTemplates.h``' bernoulli_kernel, ``bernoulli_distribution<float>``,
``transformation::uniform_real`` and ``bernoulli``), i.e. iff (y & 0xFFFFFF) < ⌈p·2²⁴⌉. numpy's
``MT19937`` is put at the torch generator's position (its key and position, read from
``Generator.get_state()``), its ``random_raw`` outputs compared a cache-sized chunk at a time
(~3 ns an entry), and the torch generator is moved past the draws (``set_state``): the same masks
and the same generator afterwards as ``torch.bernoulli`` (:func:`keep_masks`; tested bit for bit).

The merged M (m×n, float64) is the one dense matrix held (beside the updates the trimmed methods
form whole when they fit one block: M is then written into the first of them, and the DARE masks);
:func:`merge_truncated` keeps these in buffers each thread reuses. M's rank-k truncation comes from the
exact SVD (LAPACK for small or high-rank cases, PROPACK's Lanczos bidiagonalisation iterated to
machine precision for the top k otherwise): :func:`truncate`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from typing import Callable, Iterator, Sequence

import numpy as np

METHODS = ("task_arithmetic", "ties", "dare_linear", "dare_ties", "magnitude_prune")
DENSITY_METHODS = ("ties", "dare_linear", "dare_ties", "magnitude_prune")
BLOCK_ENTRIES = 1 << 22  # entries of one row block of a large update (32 MiB in float64)
CHUNK_ENTRIES = 1 << 16  # entries of one row chunk of the elementwise pass (512 KiB in float64: cache-sized)
_SIGN_BIT = np.uint64(1 << 63)
GATHER = 1 << 22  # radix selection gathers the candidates once at most this many remain


@dataclass(frozen=True)
class TaskVector:
    """τ = L·R (L m×r, R r×n) when R is given, else the dense m×n array L."""

    L: np.ndarray
    R: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.L.shape[0], self.L.shape[1] if self.R is None else self.R.shape[1])

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows start:stop of τ in float64."""
        if self.R is None:
            return np.asarray(self.L[start:stop], dtype=np.float64)
        return self.L[start:stop] @ self.R


def block_rows(shape: tuple[int, int], budget: int = BLOCK_ENTRIES) -> int:
    """Rows per block so that one block holds at most ``budget`` entries (at least one row)."""
    return max(1, budget // max(1, shape[1]))


def _blocks(tv: TaskVector, rows: int) -> Iterator[tuple[int, int]]:
    m = tv.shape[0]
    for start in range(0, m, rows):
        yield start, min(m, start + rows)


def kth_largest_abs(blocks: Callable[[], Iterator[np.ndarray]], k: int, gather: int = GATHER) -> float:
    """The k-th largest |x| over every block that ``blocks()`` yields (k ≥ 1), exactly.

    Radix selection on the bit patterns of |x| (non-negative doubles sort like their uint64 bits),
    16 bits a pass over the blocks; once at most ``gather`` candidates share the digits found, one
    more pass gathers them and ``np.partition`` finishes. No pass holds more than a block and the
    candidates.
    """
    prefix, remaining, shift = 0, k, 64
    while shift > 0:
        shift -= 16
        counts = np.zeros(1 << 16, dtype=np.int64)
        for blk in blocks():
            u = np.abs(blk).ravel().view(np.uint64)
            if shift < 48:
                u = u[(u >> np.uint64(shift + 16)) == np.uint64(prefix)]
            counts += np.bincount(((u >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.intp), minlength=1 << 16)
        from_top = np.cumsum(counts[::-1])
        i = int(np.searchsorted(from_top, remaining))  # first digit (from the top) reaching k
        remaining -= int(from_top[i - 1]) if i > 0 else 0
        prefix = (prefix << 16) | (0xFFFF - i)
        if counts[0xFFFF - i] <= gather and shift > 0:
            top = np.uint64(prefix)
            found = [u[(u >> np.uint64(shift)) == top] for u in (np.abs(b).ravel().view(np.uint64) for b in blocks())]
            cand = np.concatenate(found).view(np.float64)
            return float(np.partition(cand, cand.size - remaining)[cand.size - remaining])
    return float(np.array([prefix], dtype=np.uint64).view(np.float64)[0])


def trim_threshold(tv: TaskVector, density: float, rows: int | None = None) -> float:
    """t such that trim_d(τ) keeps |x| ≥ t: the ⌊d·m·n⌋-th largest magnitude (inf when that is 0 entries)."""
    m, n = tv.shape
    k = int(density * m * n)  # PEFT: int(density * tensor.numel())
    if k == 0:
        return float("inf")
    rows = rows or block_rows(tv.shape)
    found = _bracketed(tv, k, rows)
    if found is not None:
        return found
    return kth_largest_abs(lambda: (tv.rows(a, b) for a, b in _blocks(tv, rows)), k)


def _bracketed(tv: TaskVector, k: int, rows: int, gather: int | None = None) -> float | None:
    """The k-th largest |τ| in one pass over the row blocks, when a sample of rows brackets it: the
    sample's sorted magnitudes give [lo, hi]; with c entries above hi, the answer is the (k − c)-th
    largest of the entries in [lo, hi] if c < k ≤ c + their count. None (radix selection instead)
    when the bracket misses or holds more than ``gather`` entries."""
    gather = GATHER if gather is None else gather
    m, n = tv.shape
    step = max(1, m // 64)
    idx = np.arange(0, m, step)
    sample = np.sort(np.abs(tv.L[idx] @ tv.R if tv.R is not None else np.asarray(tv.L[idx], dtype=np.float64)).ravel())
    pos = int((m * n - k) / (m * n) * sample.size)
    margin = int(4 * np.sqrt(sample.size)) + 8
    lo, hi = sample[max(0, pos - margin)], sample[min(sample.size - 1, pos + margin)]
    above, band, held = 0, [], 0
    for a, b in _blocks(tv, rows):
        x = np.abs(tv.rows(a, b))
        above += int(np.count_nonzero(x > hi))
        kept = x[(x >= lo) & (x <= hi)]
        held += kept.size
        if held > gather or above >= k:
            return None
        band.append(kept)
    band = np.concatenate(band) if band else np.empty(0)
    need = k - above
    if need > band.size:
        return None
    return float(np.partition(band, band.size - need)[band.size - need])


def _threshold_in_memory(x: np.ndarray, density: float) -> float:
    """trim_threshold of an update held whole: the ⌊d·size⌋-th largest |x|, exactly (:func:`_kth_largest`)."""
    k = int(density * x.size)
    if k == 0:
        return float("inf")
    return _kth_largest(np.abs(x).ravel(), k)


def _kth_largest(a: np.ndarray, k: int, sample_size: int = 8192) -> float:
    """The k-th largest entry of the flat non-negative array ``a`` (1 ≤ k ≤ a.size), exactly.

    Bracketing by a random sample (fixed seed): its order statistics at the answer's expected rank
    ± 2√S + 8 (at least four standard deviations) give [lo, hi]; counting the entries above hi and
    at least lo places the answer within [lo, hi], and the sample points inside narrow it to
    [lo′, hi′] the same way; with c entries above hi′, the answer is the (k − c)-th largest of the
    entries in [lo′, hi′] whenever c < k ≤ c + their count (np.partition of that band only). Any
    bracket that misses falls back to np.partition of everything.
    """
    n = a.size
    if n > 1 << 15:
        sample = a[np.random.default_rng(0).integers(0, n, sample_size)]
        pos = int((n - k) / n * sample_size)
        margin = int(2 * np.sqrt(sample_size)) + 8
        i, j = max(0, pos - margin), min(sample_size - 1, pos + margin)
        ordered = np.partition(sample, [i, j])
        lo, hi = ordered[i], ordered[j]
        above, at_least = int(np.count_nonzero(a > hi)), int(np.count_nonzero(a >= lo))
        if above < k <= at_least:
            inside = np.sort(ordered[i:j + 1])  # the sample points in [lo, hi]
            rank = (at_least - k) / max(1, at_least - above) * (inside.size - 1)  # the answer's place among them
            spread = int(2 * np.sqrt(inside.size)) + 4
            lo = inside[max(0, int(rank) - spread)]
            hi = inside[min(inside.size - 1, int(rank) + spread + 1)]
            over = a > hi
            above = int(np.count_nonzero(over))
            band_mask = a >= lo
            band_mask ^= over  # lo ≤ a ≤ hi (a > hi implies a ≥ lo)
            band = a[band_mask]
            need = k - above
            if 0 < need <= band.size:
                return float(np.partition(band, band.size - need)[band.size - need])
    return float(np.partition(a, n - k)[n - k])


# torch's CPU generator state (CPUGeneratorImplState, CPUGeneratorImpl.cpp): initial seed (u64),
# left (i32), seeded (i32), next (u64), the 624 state words (each in a u64), then normal-sample caches
_MT_N = 624
_TORCH_STATE_BYTES = 5056
_LEFT, _SEEDED, _NEXT, _KEY = slice(8, 12), slice(12, 16), slice(16, 24), slice(24, 24 + 8 * _MT_N)


_LOCAL = threading.local()  # per thread: numpy's MT19937 and the torch state bytes its last draws wrote; scratch


def _scratch(slot: str, shape: tuple[int, int], dtype=np.float64) -> np.ndarray:
    """A C-contiguous ``shape`` array on this thread's buffer ``slot``, grown as needed and reused from
    call to call: a fresh array costs a page fault per 4 KiB written (~10–15 % of a MiniLM merge).
    Only for arrays of updates that fit one block (J·m·n ≤ :data:`BLOCK_ENTRIES`), so with J inputs
    a thread keeps about BLOCK_ENTRIES float64 and as many bools (36 MiB; 11 MiB after MiniLM merges)."""
    pool = _LOCAL.__dict__.setdefault("pool", {})
    size = shape[0] * shape[1]
    buf = pool.get((slot, np.dtype(dtype)))
    if buf is None or buf.size < size:
        buf = pool[(slot, np.dtype(dtype))] = np.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)


def _numpy_mt19937(generator):
    """numpy's MT19937 at ``generator``'s position and the generator's state bytes; None when the
    state is not the layout above (then torch draws the masks itself). A generator whose state is
    the one the last draws in this thread wrote is where that MT19937 stopped: it is reused as it
    is (setting numpy's state costs more than drawing a 384×384 mask)."""
    state = generator.get_state().numpy()
    last = getattr(_LOCAL, "last", None)
    _LOCAL.last = None  # until this draw writes its state back
    if last is not None and np.array_equal(last[1], state):
        return last[0], state
    if state.size != _TORCH_STATE_BYTES:
        return None
    left = int(state[_LEFT].view(np.int32)[0])
    nxt = int(state[_NEXT].view(np.uint64)[0])
    if int(state[_SEEDED].view(np.int32)[0]) != 1 or not (0 < left <= _MT_N and nxt <= _MT_N):
        return None
    # torch regenerates the block when --left reaches 0 (left == 1), numpy when pos == 624
    pos = _MT_N if left == 1 else nxt
    bitgen = last[0] if last is not None else np.random.MT19937(0)  # seeded only to skip the OS entropy
    bitgen.state = {"bit_generator": "MT19937",
                    "state": {"key": state[_KEY].view(np.uint64).astype(np.uint32), "pos": pos}}
    return bitgen, state


def _advance_torch(generator, bitgen, state) -> None:
    """Move ``generator`` to ``bitgen``'s position (numpy's pos p ≥ 1 is torch's next = p, left = 625 − p)."""
    import torch

    inner = bitgen.state["state"]
    pos = int(inner["pos"])
    state[_KEY].view(np.uint64)[:] = inner["key"]
    state[_NEXT].view(np.uint64)[0] = pos
    state[_LEFT].view(np.int32)[0] = _MT_N + 1 - pos
    generator.set_state(torch.from_numpy(state))
    _LOCAL.last = (bitgen, state)


def keep_threshold(density: float) -> int:
    """⌈p·2²⁴⌉ for p = float32(density): torch keeps an entry iff (y & 0xFFFFFF) < this."""
    return int(np.ceil(float(np.float32(density)) * (1 << 24)))


def _draw_keep(bitgen, out: np.ndarray, threshold: int) -> None:
    """Fill the flat bool ``out`` with (y & 0xFFFFFF) < threshold for the next out.size outputs y."""
    for a in range(0, out.size, CHUNK_ENTRIES):
        b = min(out.size, a + CHUNK_ENTRIES)
        raw = bitgen.random_raw(b - a)
        np.bitwise_and(raw, 0xFFFFFF, out=raw)
        np.less(raw, threshold, out=out[a:b])


def keep_masks(shapes: Sequence[tuple[int, ...]], density: float, generator,
               out: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
    """Bool keep-masks equal to ``torch.bernoulli(torch.full(shape, density, float32), generator=generator)``,
    one per shape, in order, and ``generator`` moved past them as those calls move it (written into
    the C-contiguous bool arrays ``out`` when given).

    Drawn with numpy's MT19937 put at the generator's position (module docstring); torch's own
    Bernoulli draws when the generator's state is not the documented layout.

    >>> import torch
    >>> a = keep_masks([(3, 5)], 0.5, torch.Generator().manual_seed(0))[0]
    >>> b = torch.bernoulli(torch.full((3, 5), 0.5), generator=torch.Generator().manual_seed(0)).numpy()
    >>> bool((a == b.astype(bool)).all())
    True
    """
    found = _numpy_mt19937(generator)
    if found is None:
        import torch

        drawn = [torch.bernoulli(torch.full(tuple(s), float(density), dtype=torch.float32), generator=generator)
                 .numpy().astype(bool) for s in shapes]
        if out is None:
            return drawn
        for o, x in zip(out, drawn):
            o[...] = x
        return list(out)
    bitgen, state = found
    threshold = keep_threshold(density)
    masks = list(out) if out is not None else [np.empty(tuple(s), dtype=bool) for s in shapes]
    if not all(mk.flags.c_contiguous and mk.dtype == bool for mk in masks):
        raise ValueError("keep_masks writes into C-contiguous bool arrays")
    for mask in masks:
        _draw_keep(bitgen, mask.reshape(-1), threshold)
    _advance_torch(generator, bitgen, state)
    return masks


def dare_masks(tv: TaskVector, density: float, generator, rows: int | None = None) -> np.ndarray:
    """τ's Bernoulli(d) keep-mask, packed one bit an entry (m×⌈n/8⌉ uint8), drawn row block by row
    block (the draws of one :func:`keep_masks` call of τ's shape)."""
    m, n = tv.shape
    rows = rows or block_rows(tv.shape)
    out = np.empty((m, (n + 7) // 8), dtype=np.uint8)
    for a, b in _blocks(tv, rows):
        out[a:b] = np.packbits(keep_masks([(b - a, n)], density, generator)[0], axis=1)
    return out


@dataclass(frozen=True)
class DenseMerge:
    """A merge's full-rank result M and its distance from the exact sum T (Frobenius norms)."""

    M: np.ndarray | None  # None from merge_truncated (M lived in a reused buffer)
    diff_fro: float  # ‖M − T‖_F
    target_fro: float  # ‖T‖_F (from the same blocks)


def merge(tvs: Sequence[TaskVector], weights: Sequence[float], method: str, density: float | None = None,
          generator=None, rows: int | None = None, out: np.ndarray | None = None) -> DenseMerge:
    """M = ``method`` of the task vectors (see the module docstring), formed in row blocks.

    ``generator``: a seeded ``torch.Generator`` for the DARE methods (drawn from here, in order).
    ``out``: an m×n float64 C-contiguous array M is written into (then M is ``out``), e.g. a
    buffer reused from module to module (:func:`merge_truncated`).
    Updates small enough for one block have their trim thresholds selected and DARE masks drawn
    whole (the trimmed methods form them once and merge in place, into the first); larger ones are
    streamed (thresholds and masks in passes over row blocks). Otherwise each cache-sized chunk of
    rows (:data:`CHUNK_ENTRIES`) is formed where it is merged, the first update's rows straight into
    M: the DARE and task-arithmetic merges write no m×n array but M (fresh pages cost ~15 % of a
    MiniLM merge).
    """
    if method not in METHODS:
        raise ValueError(f"unknown task-vector method {method!r}")
    if len({tv.shape for tv in tvs}) != 1:
        raise ValueError(f"task vectors of different shapes {sorted({tv.shape for tv in tvs})}")
    w = [float(x) for x in weights]
    shape = tvs[0].shape
    rows = rows or block_rows(shape, BLOCK_ENTRIES // max(1, len(tvs)))
    d = 1.0 if density is None else float(density)
    active = method != "task_arithmetic" and d < 1
    trimmed = active and method in ("ties", "magnitude_prune")
    dare = active and method.startswith("dare")
    if dare and generator is None:
        raise ValueError("DARE needs a seeded torch.Generator")
    elect = method in ("ties", "dare_ties")
    whole = rows >= shape[0]  # one block holds every update: select thresholds and draw masks on them whole
    # trimming selects on each whole update, so it forms them once and merges into the first; otherwise
    # each chunk's rows are formed where they are merged, the first update's straight into M
    formed = None
    if whole and trimmed:
        first = _owned_rows(tvs[0], 0, shape[0]) if out is None else _rows_into(tvs[0], 0, shape[0], out)
        formed = [first] + [_rows_into(tv, 0, shape[0], _scratch(f"tau{j}", shape)) for j, tv in enumerate(tvs[1:], 1)]
    trims = None
    if trimmed:
        trims = [_threshold_in_memory(t, d) for t in formed] if whole else [trim_threshold(tv, d, rows) for tv in tvs]
    masks = None
    if dare:
        if whole:
            masks = keep_masks([shape] * len(tvs), d, generator, out=[_scratch(f"mask{j}", shape, bool) for j in range(len(tvs))])
        else:
            masks = [dare_masks(tv, d, generator, rows) for tv in tvs]
    M = formed[0] if formed is not None else (np.empty(shape) if out is None else out)
    diff2 = t2 = 0.0
    for a, b in _blocks(tvs[0], min(rows, block_rows(shape, CHUNK_ENTRIES))):  # cache-sized chunks of rows
        if formed is not None:
            taus = [t[a:b] for t in formed]
        else:
            taus = [_rows_into(tvs[0], a, b, M[a:b])] + [_owned_rows(tv, a, b) for tv in tvs[1:]]
        keep = None
        if masks is not None:
            keep = [mk[a:b] if whole else np.unpackbits(mk[a:b], axis=1, count=shape[1]) for mk in masks]
        _, d2, n2 = _combine(taus, w, d, elect, trims, keep)  # M's rows a:b, merged in place
        diff2 += d2
        t2 += n2
    return DenseMerge(M, float(np.sqrt(diff2)), float(np.sqrt(t2)))


def merge_truncated(tvs: Sequence[TaskVector], weights: Sequence[float], method: str, k: int,
                    density: float | None = None, generator=None) -> tuple[DenseMerge, Truncation]:
    """:func:`merge` and the :func:`truncate` to rank k of its M (the DenseMerge's M is None).

    When the updates fit one block (:data:`BLOCK_ENTRIES`), M is written into a buffer this thread
    keeps and reuses from call to call (:func:`_scratch`). M never leaves this function, so nothing
    a caller holds is overwritten by the next call.
    """
    shape = tvs[0].shape
    out = _scratch("M", shape) if len(tvs) * shape[0] * shape[1] <= BLOCK_ENTRIES else None
    dense = merge(tvs, weights, method, density, generator=generator, out=out)
    return DenseMerge(None, dense.diff_fro, dense.target_fro), truncate(dense.M, k)


def _rows_into(tv: TaskVector, start: int, stop: int, out: np.ndarray) -> np.ndarray:
    """Rows start:stop of τ in float64, written into ``out`` (rows of M: no new array to fault in)."""
    if tv.R is None:
        out[...] = tv.L[start:stop]
        return out
    return np.matmul(tv.L[start:stop], tv.R, out=out)


def _owned_rows(tv: TaskVector, start: int, stop: int) -> np.ndarray:
    """Rows start:stop of τ in float64, as a new array the merge may overwrite."""
    if tv.R is None:
        return np.array(tv.L[start:stop], dtype=np.float64)
    return tv.L[start:stop] @ tv.R


def _combine(taus: list[np.ndarray], w: list[float], d: float, elect: bool, trims: list[float] | None = None,
             masks: list[np.ndarray] | None = None) -> tuple[np.ndarray, float, float]:
    """(M, ‖M − T‖², ‖T‖²) of one block of rows, T = Σ_j w_j·τ_j; M is ``taus[0]``, every τ_j overwritten.

    ``trims``: the trim thresholds (τ_j keeps |x| ≥ t_j); ``masks``: DARE's 0/1 keep-masks
    (τ_j·mask_j / d). Election without branches: with e = ±1 the sign elected (+1 where
    Σ_j τ̂_j ≥ 0; the sum's sign bit gives −1 only at −0.0, where every τ̂_j is ±0 and agrees with
    neither sign), u_j = e·τ̂_j is positive exactly where τ̂_j agrees, so
    M = e·Σ_j w_j·max(u_j, 0) / max(1, #{j : u_j > 0}). Multiplying by e is exact: it flips sign
    bits (XOR with the sum's sign bit).
    """
    T = np.multiply(taus[0], w[0])
    tmp = np.empty_like(T)
    for wj, t in zip(w[1:], taus[1:]):
        T += np.multiply(t, wj, out=tmp)
    keep = np.empty(T.shape, dtype=bool)
    if trims is not None:
        for t, th in zip(taus, trims):
            np.greater_equal(np.abs(t, out=tmp), th, out=keep)
            np.multiply(t, keep, out=t)
    if masks is not None:
        for t, mk in zip(taus, masks):
            np.multiply(t, mk, out=t)
            np.divide(t, d, out=t)
    if elect:
        np.copyto(tmp, taus[0])
        for t in taus[1:]:
            tmp += t
        e = np.bitwise_and(tmp.view(np.uint64), _SIGN_BIT, out=tmp.view(np.uint64))  # the sum's sign bit: e = −1 where set
        count = np.zeros(T.shape, dtype=np.uint8 if len(taus) < 256 else np.int64)
        for wj, t in zip(w, taus):
            np.bitwise_xor(t.view(np.uint64), e, out=t.view(np.uint64))  # u_j = e·τ̂_j
            count += np.greater(t, 0.0, out=keep)
            np.maximum(t, 0.0, out=t)
            t *= wj
        M = taus[0]
        for t in taus[1:]:
            M += t
        count += count == 0  # max(1, count)
        M /= count
        np.bitwise_xor(M.view(np.uint64), e, out=M.view(np.uint64))
    else:
        M = taus[0]
        M *= w[0]
        for wj, t in zip(w[1:], taus[1:]):
            t *= wj
            M += t
    diff = np.subtract(M, T, out=tmp)
    return M, float(np.vdot(diff, diff)), float(np.vdot(T, T))


@dataclass(frozen=True)
class Truncation:
    """M ≈ L·R with L = U_k·√Σ_k (m×k), R = √Σ_k·V_kᵀ (k×n): the best rank-k approximation."""

    L: np.ndarray
    R: np.ndarray
    sigma: np.ndarray  # the k largest singular values of M
    residual_fro: float  # ‖M − L·R‖_F


@cache
def _plain_operator_class():
    from scipy.sparse.linalg import LinearOperator

    class PlainOperator(LinearOperator):
        """A dense matrix whose matvec and rmatvec are the bare BLAS products: LinearOperator's own
        checks shapes and dtypes on every call, which for a 384-wide matrix cost as much as the product."""

        def __init__(self, A: np.ndarray):
            super().__init__(A.dtype, A.shape)
            self.A = A

        def matvec(self, x):
            return self.A @ x

        def rmatvec(self, x):
            return self.A.T @ x

        def _matvec(self, x):
            return self.A @ x

        def _rmatvec(self, x):
            return self.A.T @ x

    return PlainOperator


def _plain_operator(M: np.ndarray):
    """M for PROPACK's products (:func:`_plain_operator_class`)."""
    return _plain_operator_class()(M)


def top_singular(M: np.ndarray, k: int, dense_below: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U_k, σ_k, V_kᵀ) of M, descending: LAPACK's SVD when min(m, n) < ``dense_below`` or k is more than a
    quarter of it, otherwise PROPACK's Lanczos bidiagonalisation (``scipy.sparse.linalg.svds``, tol = 0:
    machine precision, a fixed start vector), tested against LAPACK to 1e-12."""
    m, n = M.shape
    q = min(m, n)
    k = min(k, q)
    if q < dense_below or k > q // 4:
        U, s, Vt = np.linalg.svd(M, full_matrices=False)
        return U[:, :k], s[:k], Vt[:k]
    from scipy.sparse.linalg import svds

    v0 = np.random.default_rng(0).standard_normal(m)
    try:
        U, s, Vt = svds(_plain_operator(M), k=k, tol=0, v0=v0, solver="propack", maxiter=min(q, max(100, 20 * k)))
    except np.linalg.LinAlgError:  # not converged in that many Lanczos steps: LAPACK
        U, s, Vt = np.linalg.svd(M, full_matrices=False)
        return U[:, :k], s[:k], Vt[:k]
    order = np.argsort(s)[::-1]
    return U[:, order], s[order], Vt[order]


def truncate(M: np.ndarray, k: int, dense_below: int = 64, rows: int | None = None) -> Truncation:
    """The rank-k truncation of M from its exact SVD (zero columns beyond min(m, n)), and its residual."""
    U, s, Vt = top_singular(M, k, dense_below)
    root = np.sqrt(s)
    kk = min(k, min(M.shape))
    L = np.zeros((M.shape[0], kk))
    R = np.zeros((kk, M.shape[1]))
    L[:, :s.size] = U * root
    R[:s.size] = root[:, None] * Vt
    # ‖M − M_k‖² = ‖M‖² − Σ_{i≤k} σ_i² (exact for the SVD's truncation); formed directly when that
    # difference is too small a part of ‖M‖² for the subtraction to keep its digits
    m2 = float(np.vdot(M, M))
    res2 = m2 - float((s ** 2).sum())
    if res2 <= 1e-6 * m2:
        rows = rows or block_rows(M.shape)
        res2 = 0.0
        for a in range(0, M.shape[0], rows):
            d = M[a:a + rows] - L[a:a + rows] @ R
            res2 += float(np.einsum("ij,ij->", d, d))
    return Truncation(L, R, s, float(np.sqrt(max(res2, 0.0))))
