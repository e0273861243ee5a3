"""The singular values of one matrix and the numbers read from them; the alignment of an update with
its base; the Shannon entropies of a probability vector. A leaf: numpy and :mod:`lab.kernels.linalg`.

With σ₁ ≥ σ₂ ≥ … the singular values of M (rows×cols):

* ‖M‖_F = √Σσ², ‖M‖₂ = σ₁, stable rank ‖M‖²_F/‖M‖²₂ (Rudelson & Vershynin 2007);
* effective rank exp(H(σ/Σσ)) (Roy & Vetterli 2007, "The effective rank: a measure of effective
  dimensionality"), entropy rank exp(H(σ²/Σσ²)) = exp of the row|column entanglement entropy;
* energy rank q: the fewest leading σ holding a fraction q of Σσ² (a post-hoc "squeeze" target);
* numerical rank: #σ > σ₁·max(rows, cols)·ε_float64, numpy.linalg.matrix_rank's tolerance
  (for factors the σ of the r×r core, which are M's nonzero singular values);
* utilisation: effective rank / rank bound (r for adapters, min(rows, cols) otherwise).

:func:`lab.kernels.singular.spectrum` computes a :class:`Spectrum` from any representation of a
matrix; :func:`lab.kernels.blocked.spectrum_from_gram` from a streamed matrix's Gram.

Example::

    >>> import numpy as np
    >>> s = Spectrum(3, 3, 3, np.array([4.0, 3.0, 0.0]))
    >>> s.spectral_norm, s.fro_norm, s.numerical_rank
    (4.0, 5.0, 2)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.kernels.linalg import SAFE_MAGNITUDE


def entropies(p: np.ndarray) -> tuple[float, float]:
    """(von Neumann −Σ p ln p, Rényi-2 −ln Σ p²) in nats of probabilities p (NaN stays NaN)."""
    p = np.asarray(p, dtype=np.float64)
    if p.size and np.isnan(p).any():
        return float("nan"), float("nan")
    nz = p[p > 0.0]
    return float(-(nz * np.log(nz)).sum()), float(-np.log((p * p).sum()))


def _entropy(p: np.ndarray) -> float:
    return entropies(p)[0]  # one Shannon entropy for the whole package


@dataclass(frozen=True)
class Spectrum:
    """The singular values of one matrix (descending) and the numbers read from them."""

    rows: int
    cols: int
    rank_bound: int
    sigma: np.ndarray

    @property
    def _magnitude(self) -> float:
        """t = σ₁ when σ₁ is so large or small that σ² would overflow or underflow (a corrupted
        checkpoint, a scale of 1e308), else 1: every number below is computed from σ / t, as a ratio
        t cancels from (or multiplied back), so ordinary spectra are not touched."""
        top = self.spectral_norm
        return top if top > 0 and not SAFE_MAGNITUDE[0] <= top <= SAFE_MAGNITUDE[1] else 1.0

    @property
    def _scaled(self) -> np.ndarray:
        return self.sigma / self._magnitude

    @property
    def fro_norm(self) -> float:
        with np.errstate(over="ignore"):
            return float(self._magnitude * np.sqrt((self._scaled ** 2).sum()))

    @property
    def spectral_norm(self) -> float:
        return float(self.sigma[0]) if self.sigma.size else 0.0

    @property
    def energy(self) -> np.ndarray:
        """σ²/Σσ² (NaN for a zero matrix)."""
        sq = self._scaled ** 2
        total = float(sq.sum())
        return sq / total if total > 0 else np.full(self.sigma.shape, np.nan)

    @property
    def stable_rank(self) -> float:
        scaled = self._scaled
        return float((scaled ** 2).sum() / scaled[0] ** 2) if self.spectral_norm > 0 else float("nan")

    @property
    def effective_rank(self) -> float:
        scaled = self._scaled
        total = float(scaled.sum())
        return float(np.exp(_entropy(scaled / total))) if total > 0 else float("nan")

    @property
    def entropy_rank(self) -> float:
        return float(np.exp(_entropy(self.energy))) if self.spectral_norm > 0 else float("nan")

    def energy_rank(self, q: float) -> int:
        """The fewest leading σ whose Σσ² reaches the fraction q of the total (0 for a zero matrix)."""
        sq = self._scaled ** 2
        total = float(sq.sum())
        if total <= 0:
            return 0
        return int(min(np.searchsorted(np.cumsum(sq), q * total, side="left") + 1, sq.size))

    @property
    def numerical_rank(self) -> int:
        if not self.sigma.size:
            return 0
        tol = self.sigma[0] * (max(self.rows, self.cols) * np.finfo(np.float64).eps)  # σ₁·max first would overflow near 1e308
        return int((self.sigma > tol).sum())

    @property
    def utilization(self) -> float:
        return self.effective_rank / self.rank_bound if self.rank_bound > 0 else float("nan")


@dataclass(frozen=True)
class Alignment:
    """How ΔW's leading singular subspaces sit in W's, and intruders of W + ΔW (see
    :func:`lab.probes.spectra.alignment` and :func:`lab.kernels.blocked.alignment_from_grams`)."""

    k: int
    overlap_left: float
    overlap_right: float
    intruder_top: int
    intruder_threshold: float
    intruder_count: int
    intruder_min_cos: float
