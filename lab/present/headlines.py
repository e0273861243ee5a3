"""One headline figure per probe family: the picture the findings' numbers link to.

Each figure shows the last checkpoint (in training order) of every run that computed the family,
each run in its own colour: the entanglement profile of one representative module with Page's curve,
the maximum and ln r; the σ spectrum of that module; an attention head's profile with both fitted
laws beside how far the attention moved; the largest γ against √ln L; each fine-tune pair's outside
distance beside its members' distances from the base (no-hair); how an adapter's energy is
shared among its units; the cross-term errors of averaging; the merge errors against rank k; α of the
base W beside W + ΔW by layer (esd); the intruder count at the default (ε, k) per layer and role; the
member × member cosine between updates (similarity); KL and loss change per text set (forgetting).
"""

from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd

from lab.present import load
from lab.present.figures import attention as attention_fig
from lab.present.figures import entanglement as entanglement_fig
from lab.present.figures import forgetting as forgetting_fig
from lab.present.figures import msu as msu_fig
from lab.present.figures import no_hair as no_hair_fig
from lab.present.figures import thresholds as thresholds_fig
from lab.present.figures import updates as updates_fig
from lab.present.figures.common import Chart
from lab.present.picks import last_rows, representative_module
from lab.present.sentences import anchor
from lab.present.frames import CONTROL_SOURCES, ID, matching_controls
from lab.store import Run

def _deltas(runs: Sequence[Run]) -> Chart:
    rows = pd.concat([last_rows(r, "deltas") for r in runs if r.has_table("deltas")], ignore_index=True)
    return updates_fig.norms_chart(rows, title="Update size ‖ΔW‖_F by layer (last checkpoint of each run)")


def _entanglement(runs: Sequence[Run]) -> Chart:
    with_table = [r for r in runs if r.has_table("entanglement")]
    module = representative_module(with_table, "entanglement")
    cols = ID + ["source", "cut", "row_sites", "n_sites", "d_left", "d_right", "entropy", "page_entropy", "max_entropy"]
    rows, controls, bounds = [], [], []
    for run in with_table:
        mine = last_rows(run, "entanglement", cols, [("module", "==", module)])
        if mine.empty:
            continue
        rows.append(mine)
        controls.append(load.read(run, "entanglement", cols, [("source", "in", list(CONTROL_SOURCES))]))
        d = load.read(run, "deltas", ["checkpoint", "module", "rows", "cols", "rank_bound"], [("module", "==", module)])
        d = d[d["rank_bound"] < d[["rows", "cols"]].min(axis=1)]  # a ceiling below the shape's own maximum: adapters
        bounds += d["rank_bound"].dropna().astype(int).unique().tolist()
    profile = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    ctrl = pd.concat([c for c in controls if not c.empty], ignore_index=True) if any(not c.empty for c in controls) else None
    bounds = sorted(set(bounds))
    return entanglement_fig.profile_chart(profile, matching_controls(profile, ctrl, bounds) if ctrl is not None else None,
                                          rank_bound=bounds,
                                          title=f"Entanglement profile: {module} (last checkpoints)")


def _attention(runs: Sequence[Run]) -> Chart:
    with_table = [r for r in runs if r.has_table("attention_summary")]
    summaries = [last_rows(r, "attention_summary") for r in with_table]
    summary = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame()
    if summary.empty:
        return attention_fig.headline_chart(pd.DataFrame(), pd.DataFrame(), summary)
    layers = sorted(summary["layer"].dropna().unique())
    if not layers:
        return attention_fig.headline_chart(pd.DataFrame(), pd.DataFrame(), summary)
    layer, head, length = int(layers[len(layers) // 2]), int(summary["head"].min()), int(summary["seq_len"].max())
    where = [("layer", "==", layer), ("head", "==", head), ("seq_len", "==", length), ("block", "==", "reads_past")]
    cuts = [last_rows(r, "attention_token_cuts", None, where) for r in with_table if r.has_table("attention_token_cuts")]
    fits = [last_rows(r, "attention_token_fits", None, where) for r in with_table if r.has_table("attention_token_fits")]
    cuts = pd.concat(cuts, ignore_index=True) if cuts else pd.DataFrame()
    fits = pd.concat(fits, ignore_index=True) if fits else pd.DataFrame()
    return attention_fig.headline_chart(cuts, fits, summary,
                                        title="Attention: the token-cut profile with Cardy's fit, and how far it moved")


def _thresholds(runs: Sequence[Run]) -> Chart:
    rows = [last_rows(r, "thresholds") for r in runs if r.has_table("thresholds")]
    return thresholds_fig.growth_chart(pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(),
                                       title="Largest γ against √ln L (last checkpoint of each run)")


def _no_hair(runs: Sequence[Run]) -> Chart:
    return no_hair_fig.distances_chart(load.read_runs(runs, "no_hair"), "layer_output",
                                       title="No-hair: each pair's layer-output distance beside its distances from the base")


def _msu(runs: Sequence[Run]) -> Chart:
    rows = [last_rows(r, "msu_units") for r in runs if r.has_table("msu_units")]
    return msu_fig.shares_chart(pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(),
                                title="How the update is shared among its units (last checkpoint of each run)")


def _msu_pairs(runs: Sequence[Run]) -> Chart:
    return msu_fig.pairs_chart(load.read_runs(runs, "msu_pairs"))


def _merge(runs: Sequence[Run]) -> Chart:
    return msu_fig.merge_chart(load.read_runs(runs, "merge"))


def _forgetting(runs: Sequence[Run]) -> Chart:
    return forgetting_fig.kl_chart(load.read_runs(runs, "forgetting"))


HEADLINES: dict[str, Callable[[Sequence[Run]], Chart]] = {
    "deltas": _deltas,
    "entanglement": _entanglement,
    "attention": _attention,
    "thresholds": _thresholds,
    "no_hair": _no_hair,
    "msu": _msu,
    "msu_pairs": _msu_pairs,
    "merge": _merge,
    "forgetting": _forgetting,
}


def headline(family: str, runs: Sequence[Run]) -> Chart | None:
    """The headline figure of ``family`` over ``runs`` (its anchor set), or None when no run computed it."""
    from lab.present.families import by_key

    record = by_key(family)
    draw = record.headline or HEADLINES.get(family)
    if draw is None or not load.computed(runs, record.tables[0]):
        return None
    chart = draw(runs)
    chart.anchor = anchor(family)
    return chart
