"""The MPS entropy profile of a matrix: von Neumann and Rényi-2 entropies at every cut of its site chain.

M (rows×cols) is read as the state ψ = vec(M)/‖M‖_F (row-major) on the chain of sites given by
the prime factors of rows then of cols (:mod:`lab.kernels.tensorize`). At each cut k = 1 … N−1,
with Schmidt coefficients p_i (:mod:`lab.kernels.schmidt`): von Neumann entropy S_k = −Σ p_i ln p_i
and Rényi-2 entropy −ln Σ p_i² (nats, :func:`lab.kernels.spectrum.entropies`), the maximum
ln min(D_left, D_right) and Page's mean for a random state (:mod:`lab.kernels.page`). A LoKr update
whose chain is aligned with its Kronecker split is computed from its two small factors
(:mod:`lab.kernels.kron`); a streamed matrix block by block (:mod:`lab.kernels.blocked`).

The entanglement probe (:mod:`lab.probes.entanglement`) turns a profile into rows and a summary.

Example::

    >>> import numpy as np
    >>> p = entanglement_profile(np.random.default_rng(0).standard_normal((12, 18)))
    >>> p.sites.dims, len(p.entropy)
    ((2, 2, 3, 2, 3, 3), 5)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.deltas import Delta, Kron, is_streamed
from lab.errors import NonFiniteError
from lab.kernels import kron
from lab.kernels.blocked import schmidt_spectra_blocked
from lab.kernels.factored import Factors, as_matrix_or_factors
from lab.kernels.memo import memo_for, pure
from lab.kernels.page import page_entropy
from lab.kernels.schmidt import schmidt_spectra
from lab.kernels.spectrum import entropies
from lab.kernels.tensorize import Sites, sites as chain_sites


@dataclass(frozen=True)
class Profile:
    """Per-cut entropies of one matrix; arrays are indexed by cut − 1 (cuts are 1 … N−1)."""

    rows: int
    cols: int
    sites: Sites
    d_left: np.ndarray
    d_right: np.ndarray
    entropy: np.ndarray  # von Neumann, nats
    renyi2: np.ndarray  # −ln Σ p², nats
    max_entropy: np.ndarray  # ln min(D_left, D_right)
    page_entropy: np.ndarray  # Page's mean for a random state of (D_left, D_right)

    @property
    def cuts(self) -> np.ndarray:
        return self.sites.cuts


def entanglement_profile(x, sites: Sites | None = None) -> Profile:
    """The entropy profile of vec(x)/‖x‖_F over every cut of its site chain.

    ``x``: a 2-D array, a :class:`~lab.deltas.Delta`, :class:`~lab.deltas.Factors`, a
    ``(B, A[, scale])`` tuple, :class:`~lab.deltas.Kron`, or a streamed
    :class:`~lab.sources.MatrixSource` (read in blocks, see :mod:`lab.kernels.blocked`); factors are
    never multiplied out, a Kronecker product only when the sites do not align with its split
    (:mod:`lab.kernels.kron`). ``sites`` defaults
    to :func:`lab.kernels.tensorize.sites` of the shape. A zero matrix gives NaN entropies.
    Raises :class:`~lab.errors.NonFiniteError` for NaN or inf entries.
    """
    return _profile_of(x, sites, keep=False)


def kept_profile(w, sites: Sites | None = None) -> Profile:
    """:func:`entanglement_profile` of a matrix that is never changed in place (a base W), its entropies
    kept in ``w``'s memo (:mod:`lab.kernels.memo`) when ``w`` is a dense array.

    The entry is pure (a function of w's values and the chain), so for a base W the engine keeps it on
    disk and a sweep's other checkpoints read W's profile instead of solving its cut Grams again.
    """
    return _profile_of(w, sites, keep=True)


def _profile_of(x, sites: Sites | None, keep: bool) -> Profile:
    x = x.matrix if isinstance(x, Delta) else x
    streamed = is_streamed(x)
    x = x if streamed else as_matrix_or_factors(x)
    rows, cols = x.shape
    st = sites if sites is not None else chain_sites(rows, cols)
    if int(np.prod(st.dims, dtype=np.int64)) != rows * cols:
        raise ValueError(f"sites {st.dims} do not multiply to {rows}x{cols}")
    if streamed:
        spectra = schmidt_spectra_blocked(x, st)  # raises NonFiniteError while streaming
    else:
        finite = x.is_finite() if isinstance(x, (Factors, Kron)) else bool(np.isfinite(x).all())
        if not finite:
            raise NonFiniteError(f"matrix {rows}x{cols} holds NaN or inf; its entanglement profile is undefined")
    if isinstance(x, Kron):
        from_factors = kron.profile_entropies(x, st)
        if from_factors is not None:
            return _profile(rows, cols, st, *from_factors)
        x = x.to_dense()  # the chain cuts across the Kronecker split
    if keep and isinstance(x, np.ndarray):
        return _profile(rows, cols, st, *_kept_entropies(x, st))
    if not streamed:
        spectra = schmidt_spectra(x, st)
    return _profile(rows, cols, st, *_entropies(spectra))


def _entropies(spectra: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [entropies(p) for p in spectra]
    return (np.array([s for s, _ in pairs], dtype=np.float64), np.array([r for _, r in pairs], dtype=np.float64))


# Set by lab.kernels.schmidt when it solves the row|column cut's Gram: σ² of the matrix, which
# lab.kernels.singular reads instead of solving that matrix again (its memo key then says "gram").
_SMALL_EIGVALS = "small_eigvals"


def _kept_entropies(x: np.ndarray, st: Sites) -> tuple[np.ndarray, np.ndarray]:
    """(von Neumann, Rényi-2) entropies at every cut of a dense matrix, kept in its memo.

    The σ² the row|column cut left for the spectra and esd probes are kept with them and put back when
    the entry is read, so those probes take the same path (and give the same bits) as when the profile
    was computed.
    """
    memo = memo_for(x)

    def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        entropy, renyi2 = _entropies(schmidt_spectra(x, st))
        small = memo.get(_SMALL_EIGVALS)
        return entropy, renyi2, (small if small is not None else np.zeros(0))  # empty: not left (no valley, rescaled)

    key = f"entanglement_profile:{'x'.join(str(d) for d in st.dims)}:{st.row_sites}"
    entropy, renyi2, small = pure(x, key, compute)
    if small.size and _SMALL_EIGVALS not in memo:
        memo[_SMALL_EIGVALS] = small
    return entropy, renyi2


def _profile(rows: int, cols: int, st: Sites, entropy: np.ndarray, renyi2: np.ndarray) -> Profile:
    dl, dr = st.d_left, st.d_right
    return Profile(
        rows=rows,
        cols=cols,
        sites=st,
        d_left=dl,
        d_right=dr,
        entropy=entropy,
        renyi2=renyi2,
        max_entropy=np.log(np.minimum(dl, dr).astype(np.float64)),
        page_entropy=np.asarray(page_entropy(dl, dr), dtype=np.float64).reshape(-1),
    )
