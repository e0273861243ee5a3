"""Rank spectra: all singular values of ΔW (or W) and the ranks they imply.

With σ₁ ≥ σ₂ ≥ … the singular values of M (rows×cols):

* ‖M‖_F = √Σσ², ‖M‖₂ = σ₁, stable rank ‖M‖²_F/‖M‖²₂ (Rudelson & Vershynin 2007);
* effective rank exp(H(σ/Σσ)) (Roy & Vetterli 2007, "The effective rank: a measure of effective
  dimensionality"), entropy rank exp(H(σ²/Σσ²)) = exp of the row|column entanglement entropy;
* energy rank q: the fewest leading σ holding a fraction q of Σσ² (a post-hoc "squeeze" target);
* numerical rank: #σ > σ₁·max(rows, cols)·ε_float64, numpy.linalg.matrix_rank's tolerance
  (for factors the σ of the r×r core, which are M's nonzero singular values);
* utilisation: effective rank / rank bound (r for adapters, min(rows, cols) otherwise).

With a base W (``delta.base``) also the overlap of ΔW's top-k singular subspaces with W's
(:func:`lab.kernels.subspaces.subspace_overlap`, k = min(top_k, numerical rank of ΔW)) and the
intruder directions of W + ΔW (:func:`lab.kernels.subspaces.intruders`).

Example::

    >>> import numpy as np
    >>> s = spectrum(np.diag([3.0, 4.0, 0.0]))
    >>> s.spectral_norm, s.fro_norm, s.numerical_rank
    (4.0, 5.0, 2)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.deltas import Delta, Kron, is_streamed
from lab.errors import NonFiniteError
from lab.kernels import subspaces
from lab.kernels.blocked import (alignment_blocked, alignment_two_pass, grams, small_eigvals, spectrum_from_gram,
                                 tuned_grams)
from lab.kernels.factored import Factors, as_matrix_or_factors
from lab.kernels.linalg import LANCZOS_FROM, in_lanes
from lab.kernels.memo import memo_for
from lab.kernels.singular import singular_values, spectrum  # noqa: F401  (importable from here too)
from lab.kernels.spectrum import Alignment, Spectrum
from lab.probes import inputs
from lab.probes.registry import Probe, ProbeContext, Rows, field_help, register
from lab.sources import as_source


@dataclass(frozen=True)
class SpectraOptions:
    """Options of the spectra probe."""

    top_k: int = field_help("dimension k of the singular subspaces of ΔW and W compared (overlap_k = min(k, rank))", default=16)
    intruder_top: int = field_help("leading left singular vectors of W + ΔW examined for intruders (the paper's 10)", default=subspaces.INTRUDER_TOP)
    intruder_threshold: float = field_help("ε: a vector is an intruder when its largest |cos| with W's vectors is below it", default=subspaces.INTRUDER_THRESHOLD)
    intruder_reference: int | None = field_help("how many of W's leading vectors intruders are compared with (none: all, as in the paper)", default=None)
    targets: tuple[str, ...] = field_help("what to analyse: delta (ΔW) and/or weight (the base W; needs --base)", default=("delta",))

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", inputs.check_targets(self.targets))
        if self.top_k < 1 or self.intruder_top < 1:
            raise ValueError("top_k and intruder_top must be at least 1")
        if not 0.0 < self.intruder_threshold <= 1.0:
            raise ValueError("intruder_threshold must be in (0, 1]")
        if self.intruder_reference is not None and self.intruder_reference < 1:
            raise ValueError("intruder_reference must be at least 1 (or none)")


def alignment_numbers(options: SpectraOptions) -> dict:
    """The options the alignment kernels take, as their keyword arguments (top_k, intruder_top,
    intruder_threshold, intruder_reference)."""
    return {"top_k": options.top_k, "intruder_top": options.intruder_top,
            "intruder_threshold": options.intruder_threshold, "intruder_reference": options.intruder_reference}


def alignment(delta_x, base: np.ndarray, options: SpectraOptions = SpectraOptions(),
              numerical_rank: int | None = None) -> Alignment:
    """Subspace overlaps of ΔW with W (top k = min(top_k, numerical rank of ΔW)) and intruders of W + ΔW.

    When either matrix is streamed, everything comes from three small Gram matrices accumulated
    in one pass (:func:`lab.kernels.blocked.alignment_blocked`).
    """
    delta_x = delta_x.matrix if isinstance(delta_x, Delta) else delta_x
    if is_streamed(delta_x) or is_streamed(base):
        if numerical_rank is None:
            numerical_rank = spectrum(delta_x).numerical_rank
        return alignment_blocked(as_source(delta_x), as_source(base), numerical_rank, **alignment_numbers(options))
    delta_x = as_matrix_or_factors(delta_x)
    base = np.asarray(base, dtype=np.float64)
    if numerical_rank is None:
        numerical_rank = spectrum(delta_x).numerical_rank
    if isinstance(delta_x, Kron):  # singular vectors and W + ΔW: dense (LoKr's matrices are adapter-sized)
        delta_x = delta_x.to_dense()
    k = min(options.top_k, numerical_rank)
    tasks = _alignment_solves(delta_x, base, options, k)
    return _alignment_from(delta_x, base, options, k, in_lanes(tasks) if _in_lanes(delta_x, base) else [t() for t in tasks])


def _in_lanes(delta_x, base: np.ndarray) -> bool:
    """Whether the in-memory alignment's solves run side by side (:func:`lab.kernels.linalg.in_lanes`): a dense
    ΔW with both sides at least ``LANCZOS_FROM`` (partial solves of a few hundred milliseconds each; a factored
    ΔW's and small matrices' are milliseconds, and may share W's full decomposition)."""
    return (isinstance(delta_x, np.ndarray) and isinstance(base, np.ndarray) and delta_x.shape == base.shape
            and min(base.shape) >= LANCZOS_FROM)


def _alignment_solves(delta_x, base: np.ndarray, options: SpectraOptions, k: int) -> list:
    """The in-memory alignment's independent solves, as argument-less tasks: ΔW's top k singular triplets, W's
    leading ones, and (``intruder_reference`` None) W + ΔW's top ``intruder_top``."""
    if options.intruder_reference is None:
        # W's leading vectors first: they decide every intruder's max-cosine unless the certificate
        # fails, and only then all of W's (subspaces.certified_max_cosines)
        lead = subspaces.leading_for_certificate(min(base.shape), k)
    else:
        lead = max(k, options.intruder_reference)
    for m in (delta_x, base):
        if isinstance(m, np.ndarray):
            memo_for(m)  # made here: the tasks may run on two threads
    tasks = [lambda: subspaces.top_singular_vectors(delta_x, k), lambda: subspaces.base_singular_vectors(base, lead)]
    if options.intruder_reference is None:
        # W + ΔW's leading vectors: for factors from W's decomposition, W + ΔW never formed
        tasks.append(lambda: subspaces.tuned_singular_vectors(base, delta_x, options.intruder_top))
    return tasks


def _alignment_from(delta_x, base: np.ndarray, options: SpectraOptions, k: int, solved: list) -> Alignment:
    """The :class:`Alignment` from the results of :func:`_alignment_solves`."""
    (u_d, _, v_d), (u_w, _, v_w), *tuned = solved
    if options.intruder_reference is None:
        lead = subspaces.leading_for_certificate(min(base.shape), k)
        y = tuned[0][0]
        if y.shape[1] == 0 or u_w.shape[1] == 0:
            count, min_cos = 0, float("nan")
        else:
            complete = lead is None or u_w.shape[1] < lead  # every direction of W with σ > 0
            best = subspaces.max_cosines_over_all(y.T @ u_w, complete,
                                                  lambda: y.T @ subspaces.base_singular_vectors(base, None)[0])
            count, min_cos = subspaces.intruder_summary(best, options.intruder_threshold)
    else:
        tuned_m = base + (delta_x.to_dense() if isinstance(delta_x, Factors) else delta_x)
        count, min_cos = subspaces.intruders(u_w[:, : options.intruder_reference], tuned_m, options.intruder_top,
                                             options.intruder_threshold)
    u_w, v_w = u_w[:, :k], v_w[:, :k]
    return Alignment(
        k=k,
        overlap_left=subspaces.subspace_overlap(u_d, u_w),
        overlap_right=subspaces.subspace_overlap(v_d, v_w),
        intruder_top=min(options.intruder_top, min(base.shape)),
        intruder_threshold=float(options.intruder_threshold),
        intruder_count=count,
        intruder_min_cos=min_cos,
    )


# ---- rows ---------------------------------------------------------------------------------------

_ALIGNMENT_COLUMNS = ("overlap_k", "overlap_left", "overlap_right", "overlap_left_random", "overlap_right_random",
                      "intruder_top", "intruder_threshold", "intruder_count", "intruder_min_cos")


def spectrum_row(s: Spectrum, source: str, align: Alignment | None = None) -> dict:
    """The ``spectra`` row of one matrix (alignment columns empty without a base)."""
    row = {
        "source": source,
        "rows": s.rows,
        "cols": s.cols,
        "rank_bound": s.rank_bound,
        "fro_norm": s.fro_norm,
        "spectral_norm": s.spectral_norm,
        "stable_rank": s.stable_rank,
        "effective_rank": s.effective_rank,
        "entropy_rank": s.entropy_rank,
        "energy_rank_90": s.energy_rank(0.90),
        "energy_rank_99": s.energy_rank(0.99),
        "numerical_rank": s.numerical_rank,
        "utilization": s.utilization,
    }
    row.update(dict.fromkeys(_ALIGNMENT_COLUMNS))
    if align is not None:
        row.update(
            overlap_k=align.k,
            overlap_left=align.overlap_left,
            overlap_right=align.overlap_right,
            overlap_left_random=align.k / s.rows,
            overlap_right_random=align.k / s.cols,
            intruder_top=align.intruder_top,
            intruder_threshold=align.intruder_threshold,
            intruder_count=align.intruder_count,
            intruder_min_cos=align.intruder_min_cos,
        )
    return row


def singular_value_rows(s: Spectrum, source: str) -> list[dict]:
    """One ``singular_values`` row per σ (all min(rows, cols) for dense, the r core values for factors,
    the rank(W1)·rank(W2) products for a Kronecker product)."""
    energy = s.energy
    cumulative = np.cumsum(energy)
    return [
        {"source": source, "index": i + 1, "sigma": float(sig), "energy_fraction": float(energy[i]),
         "cumulative_energy": float(cumulative[i])}
        for i, sig in enumerate(s.sigma)
    ]


def analyze_matrix(x, source: str, rank_bound: int, base=None, options: SpectraOptions = SpectraOptions()) -> Rows:
    """Both tables' rows for one matrix; with ``base`` (W) also its alignment with W."""
    if is_streamed(x):
        return _analyze_streamed(x, source, rank_bound, base, options)
    side_by_side = _side_by_side(x, base, source, rank_bound, options)
    if side_by_side is not None:
        return side_by_side
    try:
        s = spectrum(x, rank_bound)
    except NonFiniteError:  # NaN/inf weights let through by --allow-nonfinite: say nothing false
        return _nonfinite_rows(x.shape, source, rank_bound)
    align = None
    if base is not None and (is_streamed(base) or np.isfinite(base).all()):
        try:
            align = alignment(x, base, options, s.numerical_rank)
        except NonFiniteError:  # a streamed W found to hold NaN/inf: no alignment, as for an in-memory one
            align = None
    return {"spectra": [spectrum_row(s, source, align)], "singular_values": singular_value_rows(s, source)}


def _side_by_side(x, base, source: str, rank_bound: int, options: SpectraOptions) -> Rows | None:
    """:func:`analyze_matrix`'s rows for a dense, finite ΔW and W large enough for lanes (:func:`_in_lanes`), with
    ΔW's singular values solved beside the alignment's solves on two one-thread lanes; None otherwise.

    The alignment needs k = min(top_k, numerical rank of ΔW) before its solves: they are made for k = top_k,
    the answer whenever ΔW's rank is at least top_k (a dense fine-tune's is full), and made again for the
    smaller k otherwise. Every solve is the call the sequential route makes, so the rows are the same bits.
    """
    if base is None or is_streamed(x) or is_streamed(base):
        return None
    x = as_matrix_or_factors(x)  # as spectrum and alignment take it
    if not (isinstance(x, np.ndarray) and isinstance(base, np.ndarray) and _in_lanes(x, base)
            and np.isfinite(x).all() and np.isfinite(base).all()):
        return None
    base = np.asarray(base, dtype=np.float64)  # as alignment takes it
    k = options.top_k
    try:
        s, *solved = in_lanes([lambda: spectrum(x, rank_bound)] + _alignment_solves(x, base, options, k))
    except NonFiniteError:  # W + ΔW overflowed: the sequential route says what holds
        return None
    if min(options.top_k, s.numerical_rank) != k:
        k = min(options.top_k, s.numerical_rank)
        solved = in_lanes(_alignment_solves(x, base, options, k))  # as alignment() solves them
    align = _alignment_from(x, base, options, k, solved)
    return {"spectra": [spectrum_row(s, source, align)], "singular_values": singular_value_rows(s, source)}


def _analyze_streamed(x, source: str, rank_bound: int, base, options: SpectraOptions) -> Rows:
    """A streamed ΔW: its spectrum and its alignment with W from ΔW's, W's and W + ΔW's Grams (one pass
    over both) and one more pass for the implicit side's products (:func:`lab.kernels.blocked.alignment_two_pass`)."""
    g = None
    if base is not None:
        try:
            g = tuned_grams(x, as_source(base))
        except NonFiniteError:  # W (or ΔW) holds NaN/inf: try ΔW alone below
            g = None
    try:
        delta_gram = g.delta if g is not None else grams(x).delta
    except NonFiniteError:
        return _nonfinite_rows(x.shape, source, rank_bound)
    s = spectrum_from_gram(delta_gram, x.shape, rank_bound, small_eigvals(x, delta_gram))
    align = (alignment_two_pass(g, x, as_source(base), s.numerical_rank, **alignment_numbers(options))
             if g is not None else None)
    return {"spectra": [spectrum_row(s, source, align)], "singular_values": singular_value_rows(s, source)}


def _nonfinite_rows(shape: tuple[int, int], source: str, rank_bound: int) -> Rows:
    rows, cols = shape
    row = dict.fromkeys(spectrum_row(Spectrum(1, 1, 1, np.ones(1)), source))
    row.update(source=source, rows=rows, cols=cols, rank_bound=int(rank_bound))
    return {"spectra": [row], "singular_values": []}


def _run(delta: Delta, options: SpectraOptions, ctx: ProbeContext) -> Rows:
    parts = []
    for i in inputs.targets(delta, options.targets):
        base = delta.base if i.source == "delta" else None  # W is compared with itself otherwise
        parts.append(analyze_matrix(i.x, i.source, i.rank_bound, base, options))
    return inputs.merge(parts)


register(Probe(
    name="spectra",
    tables=("spectra", "singular_values"),
    run=_run,
    options=SpectraOptions,
    on_controls=True,
    description="singular values of ΔW (and W): norms, stable/effective/energy/numerical ranks, alignment with W",
))
