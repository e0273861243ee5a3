"""Heavy-tailed self-regularization metrics of a weight matrix's eigenvalue spectrum (WeightWatcher's).

For M (rows×cols: W, W + ΔW or ΔW) the eigenvalues are λ_i = σ_i², the squared singular values,
all min(rows, cols) of them, *not* divided by N: WeightWatcher 0.7.5.5's defaults
(``normalize=False``; ``WeightWatcher.combined_eigenvalues`` has the ``evals / N`` line commented
out; ``conv2d_norm`` touches only convolutions). The singular values come from the spectra
probe's exact paths (:func:`lab.kernels.singular.singular_values`: the r×r core of factors, the
Kronecker products' σ, a streamed matrix's one-pass Gram, a dense matrix's eigenvalues already
solved by the entanglement probe when it ran first).

Per matrix, with the column names of WeightWatcher's ``details`` DataFrame:

* ``alpha``, ``xmin``, ``xmax``, ``D``, ``sigma``, ``num_pl_spikes``: the power-law fit of the λ above
  1e-5 (:func:`lab.probes.powerlaw.fit_power_law`: Clauset, Shalizi & Newman 2009, as ``WWFit``; below
  20 such λ, a rank-r adapter's ΔW, WeightWatcher 0.7.7's small-sample rule unless the ``small_sample``
  option is off);
* ``log_norm`` = log10 Σλ, ``log_spectral_norm`` = log10 λ_max, ``alpha_weighted`` = α·log10 λ_max,
  ``log_alpha_norm`` = log10 Σ λ^α, ``stable_rank`` = Σλ / λ_max (``apply_norm_metrics``);
* ``rand_distance``: the Jensen–Shannon distance (natural log) between the ascending eigenvalues of M
  and of M with its entries shuffled (seeded), each vector read as a distribution over positions
  (RMT_Util ``jensen_shannon_distance``, applied by ``apply_random_esd``); ``max_rand_eval``, the
  shuffled matrix's largest λ; ``num_rand_spikes``: the λ of M above it (spikes a random matrix with
  the same entries does not have);
* ``mp_softrank`` = λ₊ / λ_max (Martin & Mahoney, arXiv 1810.01075, as RMT_Util ``calc_mp_soft_rank``)
  with λ₊ = v·(√rows + √cols)² the Marchenko–Pastur bulk edge of a rows×cols matrix of i.i.d.
  entries of M's mean square v = Σλ/(rows·cols). WeightWatcher's ``mp_fit=True`` instead fits the
  MP variance to a kernel density of the ESD; this closed form is what its ``ww_softrank``
  (max_rand_eval / λ_max) estimates, so compare ``mp_softrank`` with that column, not its fitted one.

The shuffle needs M's entries: a factored or Kronecker M is multiplied out for it (O(rows·cols)
memory), a streamed one is not shuffled (those three columns NaN).

Example::

    >>> import numpy as np
    >>> m = esd_metrics(np.random.default_rng(0).standard_normal((300, 200)), seed=0)
    >>> 0.9 < m.mp_softrank < 1.1 and m.num_rand_spikes <= 2
    True
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from lab.deltas import Delta, Kron, is_streamed
from lab.errors import NonFiniteError
from lab.kernels import linalg
from lab.kernels.factored import Factors, as_matrix_or_factors
from lab.kernels.memo import pure
from lab.kernels.singular import singular_values
from lab.probes import inputs
from lab.probes.powerlaw import PowerLawFit, fit_power_law
from lab.probes.registry import Probe, ProbeContext, Rows, field_help, register

TARGETS = ("delta", "weight", "tuned")


@dataclass(frozen=True)
class ESDOptions:
    """Options of the esd probe."""

    targets: tuple[str, ...] = field_help(
        "what to analyse: delta (ΔW), weight (the base W) and/or tuned (W + ΔW); weight and tuned need --base",
        default=("delta", "weight", "tuned"))
    small_sample: bool = field_help("below 20 fitted eigenvalues (a LoRA ΔW of rank < 20), fit with WeightWatcher 0.7.7's "
                                    "small-sample rule (bias-corrected α, tails of at least 8), as `pip install weightwatcher` "
                                    "does today; false: the plain Clauset fit at every size", default=True)
    randomize: bool = field_help("also compare with the spectrum of the matrix with its entries shuffled "
                                 "(rand_distance, max_rand_eval, num_rand_spikes)", default=True)

    def __post_init__(self) -> None:
        wanted = tuple(self.targets)
        bad = [t for t in wanted if t not in TARGETS]
        if bad or not wanted:
            raise ValueError(f"unknown target(s) {', '.join(map(repr, bad)) or '(none)'}; choose from {', '.join(TARGETS)}")
        object.__setattr__(self, "targets", wanted)


@dataclass(frozen=True)
class ESDMetrics:
    """WeightWatcher's per-layer metrics of one matrix (NaN where undefined: see :func:`esd_metrics`)."""

    rows: int
    cols: int
    num_evals: int
    lambda_max: float
    fit: PowerLawFit
    log_norm: float
    log_spectral_norm: float
    alpha_weighted: float
    log_alpha_norm: float
    stable_rank: float
    mp_softrank: float
    rand_distance: float
    max_rand_eval: float
    num_rand_spikes: float  # NaN without a shuffle, so a float


def eigenvalues(x) -> np.ndarray:
    """λ = σ² of M (array, Factors, Kron, Delta or streamed source), descending, all min(rows, cols)
    of them (the zeros a factored M cannot hold appended)."""
    x = x.matrix if isinstance(x, Delta) else x
    sigma = singular_values(x)
    lam = np.zeros(min(int(n) for n in x.shape))
    lam[: sigma.size] = np.asarray(sigma, dtype=np.float64)[: lam.size] ** 2
    return lam


def jensen_shannon_distance(p: np.ndarray, q: np.ndarray) -> float:
    """√((KL(p‖m) + KL(q‖m)) / 2), m = (p + q)/2, natural log, p and q normalised to sum 1."""
    p = np.asarray(p, dtype=np.float64) / np.sum(p)
    q = np.asarray(q, dtype=np.float64) / np.sum(q)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    return float(np.sqrt(max((kl(p) + kl(q)) / 2, 0.0)))


def shuffled_eigenvalues(dense: np.ndarray, seed: int) -> np.ndarray:
    """λ of ``dense`` with its entries permuted uniformly at random (numpy's default_rng(seed)), descending."""
    flat = np.asarray(dense, dtype=np.float64).ravel()
    return linalg.dense_singular_values(flat[_permutation(int(seed), flat.size)].reshape(dense.shape)) ** 2


# The permutation depends on the seed and the size alone: W, ΔW and every checkpoint's matrix of a module
# shape share it. Drawing one of a 1536×384 matrix's entries took ~20 ms, a tenth of an additional
# checkpoint's cost with esd; kept for the last few (seed, size) up to this many entries (8 bytes each).
_KEEP_PERMUTATIONS_UP_TO = 1 << 22
_PERMUTATIONS: dict[tuple[int, int], np.ndarray] = {}
_PERMUTATIONS_LOCK = threading.Lock()


def _permutation(seed: int, size: int) -> np.ndarray:
    """numpy's default_rng(seed).permutation(size), the same array for the same (seed, size)."""
    key = (seed, size)
    with _PERMUTATIONS_LOCK:
        perm = _PERMUTATIONS.pop(key, None)
    if perm is None:
        perm = np.random.default_rng(seed).permutation(size)
        perm.flags.writeable = False
    if size <= _KEEP_PERMUTATIONS_UP_TO:
        with _PERMUTATIONS_LOCK:
            _PERMUTATIONS[key] = perm  # most recent last
            while len(_PERMUTATIONS) > 4:
                _PERMUTATIONS.pop(next(iter(_PERMUTATIONS)))
    return perm


def esd_metrics(x, seed: int = 0, randomize: bool = True, small_sample: bool = True) -> ESDMetrics:
    """The metrics of one matrix (see the module notes). Raises NonFiniteError for NaN or inf entries.

    A zero matrix has no spectrum to fit: every metric NaN but the counts.
    """
    x = x.matrix if isinstance(x, Delta) else x
    streamed = is_streamed(x)
    if not streamed:
        x = as_matrix_or_factors(x)
        finite = x.is_finite() if isinstance(x, (Factors, Kron)) else bool(np.isfinite(x).all())
        if not finite:
            raise NonFiniteError(f"matrix {x.shape[0]}x{x.shape[1]} holds NaN or inf; its eigenvalues are undefined")
    rows, cols = (int(n) for n in x.shape)
    lam = eigenvalues(x)
    fit = fit_power_law(lam, small_sample=small_sample)
    nan = float("nan")
    total, top = float(lam.sum()), float(lam[0]) if lam.size else 0.0
    if top <= 0:
        return ESDMetrics(rows, cols, lam.size, top, fit, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    log_top = float(np.log10(top))
    alpha = fit.alpha
    rand_distance = max_rand = spikes = nan
    if randomize and not streamed:
        if isinstance(x, np.ndarray):  # W itself: shuffled once per seed (a sweep's checkpoints read it from disk)
            rand = pure(x, f"shuffled_eigvals:{int(seed)}", lambda: shuffled_eigenvalues(x, seed))
        else:
            rand = shuffled_eigenvalues(x.to_dense(), seed)
        rand_distance = jensen_shannon_distance(lam[::-1], rand[::-1])  # ascending, as WeightWatcher sorts them
        max_rand = float(rand[0])
        spikes = float((lam > max_rand).sum())
    edge = total / (rows * cols) * (np.sqrt(rows) + np.sqrt(cols)) ** 2
    return ESDMetrics(
        rows=rows, cols=cols, num_evals=int(lam.size), lambda_max=top, fit=fit,
        log_norm=float(np.log10(total)),
        log_spectral_norm=log_top,
        alpha_weighted=alpha * log_top,
        log_alpha_norm=float(np.log10(np.sum(lam[lam > 0] ** alpha))) if fit.ok else nan,
        stable_rank=total / top,
        mp_softrank=float(edge / top),
        rand_distance=rand_distance, max_rand_eval=max_rand, num_rand_spikes=spikes,
    )


def esd_row(m: ESDMetrics, source: str) -> dict:
    """The ``esd`` row of one matrix."""
    return {
        "source": source, "rows": m.rows, "cols": m.cols, "num_evals": m.num_evals,
        "num_fitted": m.fit.num_fitted, "lambda_max": m.lambda_max,
        "alpha": m.fit.alpha, "xmin": m.fit.xmin, "xmax": m.fit.xmax, "D": m.fit.D, "sigma": m.fit.sigma,
        "num_pl_spikes": m.fit.num_pl_spikes,
        "log_norm": m.log_norm, "log_spectral_norm": m.log_spectral_norm, "alpha_weighted": m.alpha_weighted,
        "log_alpha_norm": m.log_alpha_norm, "stable_rank": m.stable_rank, "mp_softrank": m.mp_softrank,
        "rand_distance": m.rand_distance, "max_rand_eval": m.max_rand_eval, "num_rand_spikes": m.num_rand_spikes,
    }


def _tuned(delta: Delta):
    """W + ΔW in memory, or None when either is streamed (not analysed then)."""
    if is_streamed(delta.base) or is_streamed(delta.matrix):
        return None
    d = delta.matrix
    return np.asarray(delta.base, dtype=np.float64) + (d if isinstance(d, np.ndarray) else d.to_dense())


def _run(delta: Delta, options: ESDOptions, ctx: ProbeContext) -> Rows:
    todo = [(i.source, i.x) for i in inputs.targets(delta, [t for t in options.targets if t != "tuned"])]
    if delta.source == "delta" and "tuned" in options.targets and delta.base is not None:
        tuned = _tuned(delta)
        if tuned is not None:
            todo.append(("tuned", tuned))
    rows = []
    for source, x in todo:
        try:
            rows.append(esd_row(esd_metrics(x, ctx.seed, options.randomize, options.small_sample), source))
        except NonFiniteError:  # NaN/inf weights let through by --allow-nonfinite: no row rather than a false one
            continue
    return {"esd": rows}


register(Probe(
    name="esd",
    tables=("esd",),
    run=_run,
    options=ESDOptions,
    default=False,
    on_controls=True,
    description="WeightWatcher's heavy-tailed metrics of W, W + ΔW and ΔW: power-law alpha (Clauset KS fit), norms, MP soft rank, shuffled control",
))
