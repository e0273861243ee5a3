"""Power-law fit of an eigenvalue tail: the continuous MLE with xmin chosen by the smallest KS distance.

Clauset, Shalizi & Newman 2009 ("Power-law distributions in empirical data"; the estimator as the
issue states it, matched here to WeightWatcher's code): for the n values x_i ≥ xmin, α̂ = 1 + n / Σ ln(x_i / xmin), and xmin is the
candidate (every observed value but the largest) whose fitted law is closest to the data in
Kolmogorov–Smirnov distance D = max |S(x) − P(x)|, P(x) = 1 − (x / xmin)^(1−α̂).

This is the fit WeightWatcher makes by default (``fit='PL'``, ``pl_package='ww'``):
``weightwatcher/WW_powerlaw.py`` class ``WWFit`` (version 0.7.5.5, repository
CalculatedContent/WeightWatcher), matched here exactly so that ``alpha``, ``xmin`` and ``D``
agree with its ``details`` columns:

* the values are the eigenvalues above 1e-5 (``EVALS_THRESH`` in its ``constants.py``, applied in
  ``WeightWatcher.fit_powerlaw``), sorted ascending, duplicates kept;
* every value but the largest is a candidate xmin (``xmins = data[:-1]``);
* D compares P at the i-th tail value (from 0) with the empirical CDF just below it, i/n
  (``np.arange(n) / n``), not the larger of i/n and (i+1)/n a two-sided KS statistic would take;
  a candidate whose α̂ ≤ 1 gets D = 1;
* the first candidate with the smallest D wins (``np.argmin``);
* σ = (α̂ − 1)/√n, the MLE's standard error as ``WWFit.sigmas`` computes it;
* ``num_pl_spikes`` counts the eigenvalues ≥ xmin (``WeightWatcher.fit_powerlaw``).

WeightWatcher 0.7.7 (the version on PyPI, not yet in the repository's 0.7.5.5) fits fewer than 20
values differently (``WWFit.fit_powerlaw_smallN``): the bias-corrected α = 1 + (n − 1)/Σ ln(x_i/xmin),
only tails of at least 8 values as candidates (when none qualifies, the whole sample), and still the
smallest D among them (its ``__init__`` takes ``argmin(Ds)`` after that method's own choice).
``small_sample=True`` reproduces that rule (with NaN where 0.7.7 would report its placeholder α of 0
or 1 for a degenerate sample); at 20 values or more both versions fit the same way.

The sums come from cumulative sums, so all candidates cost O(N) for α̂ and O(N²) for D, in
float64 (N ≤ min(rows, cols) eigenvalues of a weight matrix: 4096² ≈ 1.7·10⁷ operations).

Example::

    >>> import numpy as np
    >>> x = (1.0 - np.random.default_rng(0).random(5000)) ** (-1 / 1.5)  # Pareto, density exponent 2.5
    >>> round(fit_power_law(x).alpha, 1)
    2.5
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EVALS_THRESH = 1e-5  # WeightWatcher's constants.EVALS_THRESH: eigenvalues at or below it are not fitted
SMALL_N = 20  # WeightWatcher 0.7.7's SMALL_N_CUTOFF: below it, its small-sample rule
SMALL_N_MIN_TAIL = 8  # ... whose candidates keep at least this many values (its k_min)


@dataclass(frozen=True)
class PowerLawFit:
    """The fitted tail: exponent, cutoff, KS distance, standard error and how many values it covers.

    Every number is NaN (counts 0) when fewer than two values lie above the threshold: nothing to fit.
    """

    alpha: float
    xmin: float
    xmax: float
    D: float
    sigma: float
    num_pl_spikes: int
    num_fitted: int  # values above the threshold that the fit saw

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.alpha))


def _ks(tail: np.ndarray, alpha: float) -> float:
    """WWFit's D: max |1 − (x/xmin)^(1−α) − i/n| over the ascending tail (xmin = tail[0])."""
    return float(np.max(np.abs(1.0 - (tail / tail[0]) ** (1.0 - alpha) - np.arange(tail.size) / tail.size)))


def _small_sample(data: np.ndarray, logs: np.ndarray, tail_sum: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(α per candidate, D per candidate) by WeightWatcher 0.7.7's small-sample rule; None for a degenerate sample."""
    n_all = data.size
    alphas, ds = np.zeros(n_all - 1), np.ones(n_all - 1)
    found = False
    for i in range(n_all - 1):
        n = n_all - i
        s = tail_sum[i] - n * logs[i]
        if n < SMALL_N_MIN_TAIL or s <= 1e-12:
            continue
        alphas[i] = 1.0 + (n - 1.0) / s
        if alphas[i] > 1.0:
            ds[i], found = _ks(data[i:], alphas[i]), True
    if not found:  # no candidate qualified: the whole sample
        s = tail_sum[0] - n_all * logs[0]
        if s <= 1e-12:
            return None
        alphas[0] = 1.0 + (n_all - 1.0) / s
        ds[0] = _ks(data, alphas[0])
    return alphas, ds


def fit_power_law(values: np.ndarray, thresh: float = EVALS_THRESH, small_sample: bool = False) -> PowerLawFit:
    """The power-law fit of the values above ``thresh`` (see the module notes for the exact rules);
    ``small_sample``: WeightWatcher 0.7.7's rule below 20 values."""
    values = np.asarray(values, dtype=np.float64).ravel()
    data = np.sort(values[values > thresh])
    n_all = data.size
    if n_all < 2:
        nan = float("nan")
        return PowerLawFit(nan, nan, nan, nan, nan, 0, int(n_all))
    logs = np.log(data)
    tail_sum = np.cumsum(logs[::-1])[::-1]  # Σ_{j≥i} ln x_j
    n = (n_all - np.arange(n_all - 1)).astype(np.float64)  # tail sizes for the candidates data[:-1]
    if small_sample and n_all < SMALL_N:
        fitted = _small_sample(data, logs, tail_sum)
        if fitted is None:
            nan = float("nan")
            return PowerLawFit(nan, nan, nan, nan, nan, 0, int(n_all))
        alphas, ds = fitted
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            alphas = 1.0 + n / (tail_sum[:-1] - n * logs[:-1])  # all tail values equal: inf, D = (n − 1)/n
        ds = np.ones(n_all - 1)
        for i in range(n_all - 1):
            if alphas[i] > 1.0:
                ds[i] = _ks(data[i:], alphas[i])
    best = int(np.argmin(ds))
    xmin, alpha = float(data[best]), float(alphas[best])
    return PowerLawFit(
        alpha=alpha,
        xmin=xmin,
        xmax=float(data[-1]),
        D=float(ds[best]),
        sigma=float((alpha - 1.0) / np.sqrt(n[best])),
        num_pl_spikes=int((values >= xmin).sum()),
        num_fitted=int(n_all),
    )
