"""Internal artificial entanglement: the entanglement probe, per module the MPS entropy profile of its
update (or weight) as rows, and a summary of the profile's shape.

The profile itself (ψ = vec(M)/‖M‖_F on the chain of M's prime factors, von Neumann and Rényi-2
entropies at every cut, the maximum and Page's mean) is the kernel
:func:`lab.kernels.profile.entanglement_profile`, importable from here too.

The row|column cut (k = row_sites) carries the entropy of ΔW's normalised squared singular
values, at most ln rank(ΔW): a rank-r update has an "entanglement valley" there while the outer
cuts can follow a volume law near Page's curve. :class:`Summary` reads the valley's depth, width
and neighbours and fits the volume law away from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.deltas import Delta
from lab.errors import NonFiniteError
from lab.kernels.page import page_entropy
from lab.kernels.profile import Profile, entanglement_profile, kept_profile
from lab.kernels.spectrum import entropies  # noqa: F401  (importable from here too)
from lab.kernels.tensorize import sites as chain_sites
from lab.probes import inputs
from lab.probes.registry import Probe, ProbeContext, Rows, field_help, register


@dataclass(frozen=True)
class Summary:
    """One module's profile in a few numbers (NaN / None where undefined).

    ``valley_*`` are read at the row|column cut v (None for 1×n and m×1 matrices).
    ``valley_depth`` = Page − S at that cut. ``page_ratio_mean`` = mean over *all* cuts of
    S_k / S_page,k; ``page_ratio_outer`` the same mean over every cut but v (see :func:`valley_shape`
    for it and the other shape numbers ``valley_neighbour_depth``, ``valley_width``, ``deepest_cut``).
    ``volume_slope``/``volume_intercept``: least-squares fit S_k = a + b·ln min(D_left, D_right)
    over the cuts *away from the valley*, i.e. every cut except the valley cut itself at which
    the rank bound r cannot cap the Schmidt rank below min(D_left, D_right): inside the row sites
    the rank at cut k is at most r·rows/D_left, inside the column sites r·cols/D_right, so a cut is
    away when that number is ≥ min(D_left, D_right). For a dense update (r = min(rows, cols))
    that is every cut but the valley. ``page_slope`` is the same fit to Page's values on those
    cuts (≈ 1 for a volume law; a Gaussian matrix matches it).
    """

    rank_bound: int
    valley_cut: int | None
    valley_entropy: float | None
    valley_max_entropy: float | None
    valley_page_entropy: float | None
    valley_depth: float | None
    page_ratio_mean: float
    volume_slope: float
    volume_intercept: float
    volume_cuts: int
    page_slope: float
    valley_neighbour_depth: float | None
    valley_width: int | None
    deepest_cut: int | None
    page_ratio_outer: float


@dataclass(frozen=True)
class ValleyShape:
    """The shape of a profile's dip at the row|column cut v (None where v or the depth is undefined).

    With depth_k = S_page,k − S_k (nats below a random state at cut k) and D = depth_v:

    * ``neighbour_depth`` = mean(S at the cuts v − 1 and v + 1 that exist) − S_v: how far the valley
      cut sits below its own neighbours, whatever Page's curve does there;
    * ``width`` = the number of cuts in the longest run of consecutive cuts that contains v and
      has depth_k ≥ D / 2 at each (v counts, so 1 is a one-cut notch); 0 when D ≤ 0 (no dip);
    * ``deepest_cut`` = the cut with the largest depth_k (the first on ties): equal to v when the
      deepest point of the profile below Page sits at the row|column cut;
    * ``page_ratio_outer`` = mean of S_k / S_page,k over every cut but v (cuts with S_page = 0
      skipped): how close the rest of the chain stays to Page (1 = random); NaN without such cuts.
    """

    neighbour_depth: float | None
    width: int | None
    deepest_cut: int | None
    page_ratio_outer: float


def valley_shape(profile: Profile) -> ValleyShape:
    """Depth against the neighbours, half-depth width, deepest cut and the outer Page ratio (see
    :class:`ValleyShape`); NaN entropies give None/NaN."""
    v = profile.sites.valley_cut
    entropy, page = profile.entropy, profile.page_entropy
    ratio = entropy / np.where(page > 0, page, np.nan)
    outer = np.ones(ratio.shape, dtype=bool)
    if v is not None:
        outer[v - 1] = False
    kept = ratio[outer & np.isfinite(ratio)]
    page_ratio_outer = float(kept.mean()) if kept.size else float("nan")
    if v is None or not np.isfinite(entropy).all():
        return ValleyShape(None, None, None, page_ratio_outer)
    i = v - 1
    neighbours = [entropy[j] for j in (i - 1, i + 1) if 0 <= j < entropy.size]
    neighbour_depth = float(np.mean(neighbours) - entropy[i]) if neighbours else None
    depth = page - entropy
    width = 0
    if depth[i] > 0:
        half = depth[i] / 2.0
        lo, hi = i, i
        while lo > 0 and depth[lo - 1] >= half:
            lo -= 1
        while hi < depth.size - 1 and depth[hi + 1] >= half:
            hi += 1
        width = hi - lo + 1
    return ValleyShape(neighbour_depth, width, int(profile.cuts[int(np.argmax(depth))]), page_ratio_outer)


def away_from_valley(profile: Profile, rank_bound: int) -> np.ndarray:
    """Boolean mask over cuts: where rank ``rank_bound`` cannot cap the Schmidt rank (see Summary)."""
    st, r = profile.sites, int(rank_bound)
    k = st.cuts
    smaller = np.minimum(profile.d_left, profile.d_right)
    in_rows = k < st.row_sites
    in_cols = k > st.row_sites
    # integer arithmetic: D_left divides rows inside the row sites, D_right divides cols in the columns
    cap_rows = r * (profile.rows // np.where(in_rows, profile.d_left, 1))
    cap_cols = r * (profile.cols // np.where(in_cols, profile.d_right, 1))
    return (in_rows & (cap_rows >= smaller)) | (in_cols & (cap_cols >= smaller))


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of least squares y = a + b·x; NaN without two distinct x."""
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or np.ptp(x) == 0.0:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def summarize(profile: Profile, rank_bound: int | None = None) -> Summary:
    """The valley and volume-law numbers of a profile; ``rank_bound`` defaults to min(rows, cols)."""
    r = int(rank_bound) if rank_bound is not None else min(profile.rows, profile.cols)
    v = profile.sites.valley_cut
    at = (lambda a: float(a[v - 1])) if v is not None else (lambda a: None)
    away = away_from_valley(profile, r)
    slope, intercept = _fit(profile.max_entropy[away], profile.entropy[away])
    page_slope, _ = _fit(profile.max_entropy[away], profile.page_entropy[away])
    ratio = profile.entropy / np.where(profile.page_entropy > 0, profile.page_entropy, np.nan)
    valley_depth = None if v is None else at(profile.page_entropy) - at(profile.entropy)
    shape = valley_shape(profile)
    return Summary(
        rank_bound=r,
        valley_cut=v,
        valley_entropy=at(profile.entropy),
        valley_max_entropy=at(profile.max_entropy),
        valley_page_entropy=at(profile.page_entropy),
        valley_depth=valley_depth,
        page_ratio_mean=float(np.mean(ratio)) if ratio.size else float("nan"),
        volume_slope=slope,
        volume_intercept=intercept,
        volume_cuts=int(away.sum()),
        page_slope=page_slope,
        valley_neighbour_depth=shape.neighbour_depth,
        valley_width=shape.width,
        deepest_cut=shape.deepest_cut,
        page_ratio_outer=shape.page_ratio_outer,
    )


# ---- rows ---------------------------------------------------------------------------------------

def profile_rows(profile: Profile, source: str) -> list[dict]:
    """One ``entanglement`` row per cut."""
    st = profile.sites
    return [
        {
            "source": source,
            "n_sites": st.n_sites,
            "row_sites": st.row_sites,
            "cut": int(k),
            "d_left": int(profile.d_left[i]),
            "d_right": int(profile.d_right[i]),
            "entropy": float(profile.entropy[i]),
            "renyi2": float(profile.renyi2[i]),
            "max_entropy": float(profile.max_entropy[i]),
            "page_entropy": float(profile.page_entropy[i]),
        }
        for i, k in enumerate(st.cuts)
    ]


def summary_row(profile: Profile, summary: Summary, source: str) -> dict:
    """The ``entanglement_summary`` row of one matrix."""
    st = profile.sites
    return {
        "source": source,
        "rows": profile.rows,
        "cols": profile.cols,
        "rank_bound": summary.rank_bound,
        "sites": st.label(),
        "n_sites": st.n_sites,
        "row_sites": st.row_sites,
        "valley_cut": summary.valley_cut,
        "valley_entropy": summary.valley_entropy,
        "valley_max_entropy": summary.valley_max_entropy,
        "valley_page_entropy": summary.valley_page_entropy,
        "valley_depth": summary.valley_depth,
        "page_ratio_mean": summary.page_ratio_mean,
        "volume_slope": summary.volume_slope,
        "volume_intercept": summary.volume_intercept,
        "volume_cuts": summary.volume_cuts,
        "page_slope": summary.page_slope,
        "valley_neighbour_depth": summary.valley_neighbour_depth,
        "valley_width": summary.valley_width,
        "deepest_cut": summary.deepest_cut,
        "page_ratio_outer": summary.page_ratio_outer,
    }


def _nonfinite_profile(rows: int, cols: int) -> Profile:
    """A profile whose entropies are NaN (input with NaN/inf, allowed by --allow-nonfinite)."""
    st = chain_sites(rows, cols)
    dl, dr = st.d_left, st.d_right
    nan = np.full(dl.shape, np.nan)
    return Profile(rows, cols, st, dl, dr, nan, nan.copy(), np.log(np.minimum(dl, dr).astype(np.float64)),
                   np.asarray(page_entropy(dl, dr), dtype=np.float64).reshape(-1))


def analyze_matrix(x, source: str, rank_bound: int) -> Rows:
    """Both tables' rows for one matrix (dense, factored or streamed) under the given source label."""
    try:
        # the base W is the same unchanged array for every probe of a unit: its profile is kept in its
        # memo, so the base cache stores it and a sweep's other checkpoints read it
        profile = kept_profile(x) if source == "weight" else entanglement_profile(x)
    except NonFiniteError:
        profile = _nonfinite_profile(*x.shape)
    return {
        "entanglement": profile_rows(profile, source),
        "entanglement_summary": [summary_row(profile, summarize(profile, rank_bound), source)],
    }


@dataclass(frozen=True)
class EntanglementOptions:
    """Options of the entanglement probe."""

    targets: tuple[str, ...] = field_help("what to analyse: delta (ΔW) and/or weight (the base W; needs --base)",
                                          default=("delta",))

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", inputs.check_targets(self.targets))


def _run(delta: Delta, options: EntanglementOptions, ctx: ProbeContext) -> Rows:
    return inputs.merge(analyze_matrix(i.x, i.source, i.rank_bound) for i in inputs.targets(delta, options.targets))


register(Probe(
    name="entanglement",
    tables=("entanglement", "entanglement_summary"),
    run=_run,
    options=EntanglementOptions,
    on_controls=True,
    description="MPS entropy profile of ΔW (and W) over the prime-factor site chain, with Page's baseline",
))
