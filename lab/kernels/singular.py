"""The singular values of any representation of a matrix, and its :class:`~lab.kernels.spectrum.Spectrum`.

Dense: :func:`lab.kernels.linalg.dense_singular_values`; factors: the r×r core
(:func:`lab.kernels.factored.core_singular_values`); a Kronecker product: the products of its
factors' singular values (:func:`lab.kernels.kron.singular_values`); streamed: from the small-side
Gram, accumulated block by block (:func:`lab.kernels.blocked.spectrum_blocked`).

Example::

    >>> import numpy as np
    >>> s = spectrum(np.diag([3.0, 4.0, 0.0]))
    >>> s.spectral_norm, s.fro_norm, s.numerical_rank
    (4.0, 5.0, 2)
"""

from __future__ import annotations

import numpy as np

from lab.deltas import Delta, Kron, is_streamed
from lab.errors import NonFiniteError
from lab.kernels import factored, kron, linalg
from lab.kernels.blocked import spectrum_blocked
from lab.kernels.factored import Factors, as_matrix_or_factors
from lab.kernels.memo import memo_for, pure
from lab.kernels.spectrum import Spectrum


def singular_values(x: np.ndarray | Factors) -> np.ndarray:
    """All singular values of any representation, descending (the one public singular-value helper).

    Dense: :func:`lab.kernels.linalg.dense_singular_values`; factors: the r×r core
    (:func:`lab.kernels.factored.core_singular_values`); a Kronecker product: the products of its
    factors' singular values (:func:`lab.kernels.kron.singular_values`, rank(W1)·rank(W2) of them);
    streamed: from the small-side Gram, accumulated block by block (:func:`lab.kernels.blocked.spectrum_blocked`).
    """
    x = x.matrix if isinstance(x, Delta) else x
    if is_streamed(x):
        return spectrum(x).sigma
    x = as_matrix_or_factors(x)
    if isinstance(x, Factors):
        return factored.core_singular_values(x)
    if isinstance(x, Kron):
        return kron.singular_values(x)
    # σ² of x were solved by the entanglement probe when it ran first on this array; either way the σ
    # are kept for the unit's other probes (esd) and, for a base W, for the sweep's other checkpoints
    known = memo_for(x).get("small_eigvals")
    return pure(x, "sigma:" + ("gram" if known is not None else "direct"), lambda: linalg.dense_singular_values(x, known))


def spectrum(x, rank_bound: int | None = None) -> Spectrum:
    """The spectrum of a 2-D array, Delta, Factors, (B, A[, scale]) or Kron (never multiplied out).

    ``rank_bound`` defaults to r for factors, rank(W1)·rank(W2) for Kron and min(rows, cols) otherwise. A streamed
    :class:`~lab.sources.MatrixSource` goes through :func:`lab.kernels.blocked.spectrum_blocked`.
    Raises :class:`~lab.errors.NonFiniteError` for NaN or inf entries.
    """
    x = x.matrix if isinstance(x, Delta) else x
    if is_streamed(x):
        return spectrum_blocked(x, int(rank_bound) if rank_bound is not None else min(x.shape))
    x = as_matrix_or_factors(x)
    rows, cols = x.shape
    finite = x.is_finite() if isinstance(x, (Factors, Kron)) else bool(np.isfinite(x).all())
    if not finite:
        raise NonFiniteError(f"matrix {rows}x{cols} holds NaN or inf; its singular values are undefined")
    if rank_bound is None:
        rank_bound = x.rank_bound if isinstance(x, (Factors, Kron)) else min(rows, cols)
    return Spectrum(rows, cols, int(rank_bound), singular_values(x))
