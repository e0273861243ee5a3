"""The entanglement valley: one row per profile with the entropy at the row|column cut, Page's
value and the maximum there, the depth below Page's value and, given the rank bound r, ln r.

Read from the probe's own ``entanglement_summary`` table when the runs have it (one row per
matrix), else computed from the per-cut ``entanglement`` rows; both give the same numbers.
:func:`valley_summary` averages the summary rows over modules per run and step (``lab demo``'s table).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from lab.present import load
from lab.present.frames import ID, present
from lab.store import Run


def valleys(entanglement: pd.DataFrame, deltas: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per profile: the entropy at the row|column cut (cut = row_sites) and the valley depth.

    ``depth = page_entropy − entropy`` at that cut, in nats: how far below a random state of the
    same dimensions the update sits where outputs meet inputs. At that cut the entropy is the
    entropy of ΔW's normalised squared singular values, so it is at most ln rank(ΔW); with
    ``deltas`` (for ``rank_bound``) the frame also carries ``ln_rank_bound`` = ln r, the ceiling
    a rank-r update cannot exceed.
    """
    cols = ["entropy", "page_entropy", "max_entropy"]
    at_cut = entanglement[entanglement["cut"] == entanglement["row_sites"]]
    keys = present(at_cut, ID + ["source"])
    out = at_cut[keys + cols].rename(columns={"entropy": "valley_entropy", "page_entropy": "valley_page",
                                               "max_entropy": "valley_max"}).copy()
    out["depth"] = out["valley_page"] - out["valley_entropy"]
    if deltas is not None and not deltas.empty and "rank_bound" in deltas.columns:
        on = present(deltas, ["run", "checkpoint", "module"])
        bounds = deltas[on + ["rank_bound"]].drop_duplicates(on)
        out = out.merge(bounds, on=on, how="left")
        out["ln_rank_bound"] = np.log(out["rank_bound"].astype(float))
    return out.reset_index(drop=True)


def valleys_from_summary(summary: pd.DataFrame) -> pd.DataFrame:
    """The same frame as :func:`valleys`, from the probe's own ``entanglement_summary`` table
    (one row per matrix, so far fewer rows to read than the per-cut profiles), plus the valley's
    shape where the table has it: ``valley_neighbour_depth``, ``valley_width``, ``deepest_cut`` and
    ``page_ratio_outer`` (defined in :func:`lab.probes.entanglement.valley_shape`; only this path
    carries them)."""
    out = summary.rename(columns={"valley_page_entropy": "valley_page", "valley_max_entropy": "valley_max",
                                  "valley_depth": "depth"})
    keep = present(out, ID + ["source", "valley_entropy", "valley_page", "valley_max", "depth", "rank_bound", "valley_cut",
                              "valley_neighbour_depth", "valley_width", "deepest_cut", "page_ratio_outer"])
    out = out[keep].copy()
    if "rank_bound" in out.columns:
        out["ln_rank_bound"] = np.log(out["rank_bound"].astype(float))
    return out.reset_index(drop=True)


def entanglement_valleys(runs: Sequence[Run],
                         read: Callable[[list[Run], str, list[str] | None], pd.DataFrame] = load.read_runs) -> pd.DataFrame:
    """The valley of every profile in ``runs``: from the probe's summary table when every run with
    profiles has it (one row per matrix), else computed from the per-cut rows. ``read(runs, table,
    columns)`` reads the rows (a dashboard passes its cached reader)."""
    with_profiles = [r for r in runs if r.has_table("entanglement")]
    if with_profiles and all(r.has_table("entanglement_summary") for r in with_profiles):
        return valleys_from_summary(read(with_profiles, "entanglement_summary", None))
    cols = ID + ["source", "cut", "row_sites", "entropy", "page_entropy", "max_entropy"]
    deltas = read(list(runs), "deltas", ["run", "checkpoint", "module", "rank_bound"])
    return valleys(read(with_profiles, "entanglement", cols), deltas)


def profile_distance(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Root-mean-square difference of two sets of entropy profiles over the cuts, nats, averaged over modules.

    ``a`` and ``b`` hold ``entanglement`` rows (``module``, ``cut``, ``entropy``) of one checkpoint
    each; modules are matched by name. When ``b`` holds a single profile (a control: one Gaussian
    matrix of the shape) every module of ``a`` is compared with it. Per module
    d = √(mean over cuts k of (S_a,k − S_b,k)²); the result is the mean of d over modules (NaN
    when no module or cut matches).
    """
    if b["module"].nunique() == 1 and a["module"].nunique() >= 1:
        b = b.drop(columns="module")
        pairs = a[["module", "cut", "entropy"]].merge(b[["cut", "entropy"]], on="cut", suffixes=("_a", "_b"))
    else:
        pairs = a[["module", "cut", "entropy"]].merge(b[["module", "cut", "entropy"]], on=["module", "cut"],
                                                       suffixes=("_a", "_b"))
    if pairs.empty:
        return float("nan")
    sq = (pairs["entropy_a"] - pairs["entropy_b"]) ** 2
    per_module = np.sqrt(sq.groupby(pairs["module"]).mean())
    return float(per_module.mean())


def valley_summary(runs: Sequence) -> pd.DataFrame:
    """Per run and step: the entanglement entropy at the row|column cut averaged over modules (with
    its spread), next to ln r and Page's value for that cut, and the same for the run's random
    controls (a Gaussian matrix, and a product of Gaussian factors of rank r).

    Empty when no run has the ``entanglement_summary`` table.
    """
    frames = []
    for run in runs:
        if "entanglement_summary" not in run.tables():
            continue
        t = run.table("entanglement_summary", columns=["run", "checkpoint", "step", "source", "rank_bound", "valley_entropy",
                                                        "valley_page_entropy", "valley_depth"])
        frames.append(t)
    if not frames:
        return pd.DataFrame()
    t = pd.concat(frames, ignore_index=True)
    t["step"] = t["step"].astype("Int64")
    # controls carry no step; label them by what they are
    t["what"] = t["source"].map({"delta": "ΔW", "random": "random Gaussian", "random_lora": "random B·A"}).fillna(t["source"])
    out = (t.groupby(["run", "what", "step", "rank_bound"], dropna=False, sort=False)
             .agg(modules=("valley_entropy", "size"), entropy=("valley_entropy", "mean"), entropy_std=("valley_entropy", "std"),
                  page=("valley_page_entropy", "mean"), depth=("valley_depth", "mean"))
             .reset_index())
    out["ln_r"] = out["rank_bound"].map(lambda r: math.log(r) if r and r > 0 else float("nan"))
    return out[["run", "what", "step", "rank_bound", "modules", "entropy", "entropy_std", "ln_r", "page", "depth"]]
