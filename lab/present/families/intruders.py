"""The intruder dimensions (ε × k sweep) family (intruders, intruder_vectors): its theory, findings, headline figure and section."""

from __future__ import annotations

from functools import partial
from typing import Sequence

import pandas as pd

from lab.present.family import Family
from lab.present.figures.common import Chart
from lab.present.page import Page
from lab.present.picks import last_checkpoint, last_rows_of
from lab.present.sentences import FULL, Sentence, Writer, against_full, configurations, per_run, ranking, who
from lab.store import Run

# lab.present.intruders and its figures are imported where used (they are needed only where a run has the table).

THEORY = (
    "Shuttleworth, Andreas, Torralba & Sharma, 'LoRA vs Full Fine-tuning: An Illusion of Equivalence' (arXiv "
    "2410.21228), write that 'weight matrices trained with LoRA have new, high-ranking singular vectors, which we "
    "call intruder dimensions, while those trained with full fine-tuning do not'. A singular vector y_j among the "
    'top k of W_ft = W + ΔW is an intruder when max_i |cos(y_j, x_i)| < ε over all singular vectors x_i of the '
    'pre-trained W on the same side. The table counts them for every ε ∈ {0.1, …, 0.9} and k ∈ {10, 20, 50, 100} '
    '(options), for the left (output) and the right (input) vectors, from one number per examined vector '
    '(intruder_vectors keeps it with σ_j, so any other threshold can be applied later). The count grows with ε and '
    'with k by construction; what a run shows is where, and how many against a full fine-tune of the same base.'
)


def findings(runs: Sequence[Run]) -> list[Sentence]:
    """Per run at its last checkpoint: intruder dimensions at the default (ε, k), left and right, and the module
    with the most; with a full fine-tune among the runs, each run's mean per module against it."""
    from lab.present import intruders as intr

    cols = ["run", "checkpoint", "step", "module", "layer", "role", "side", "top_k", "examined", "threshold",
            "intruder_count"]
    out, last = [], {}
    for run, rows in per_run(runs, "intruders", cols):
        rows = rows[rows["checkpoint"].astype(str) != "controls"]
        ck = last_checkpoint(rows)
        if ck is None:
            continue
        rows = rows[rows["checkpoint"].astype(str) == ck]
        last[run] = rows
        eps, k = intr.setting(rows)
        w = Writer("intruders", run)
        who(w, run, ck, rows)
        w.text("at ε = ").num("threshold", eps, ", k = ").num("top_k", k, ", ")
        for side in ("left", "right"):
            mine = intr.at(rows, eps, k, side)
            if mine.empty:
                continue
            w.text("; " if side == "right" else "").num(f"intruders_{side}", mine["intruder_count"].sum(),
                                                         f" intruders among the {side} singular vectors of W + ΔW (")
            w.num(f"examined_{side}", mine["examined"].sum(), " examined over ").num(f"modules_{side}", len(mine), " modules")
            top = mine.sort_values(["intruder_count", "module"], ascending=[False, True]).iloc[0]
            if top["intruder_count"] > 0:
                w.text(f"; most in {top['module']}: ").num(f"most_{side}", top["intruder_count"])
            w.text(")")
        sweep = rows[(rows["side"] == "left") & (rows["top_k"] == k)].groupby("threshold")["intruder_count"].sum()
        if not sweep.empty:  # where the count starts, when the default ε finds none or few
            found = sweep[sweep > 0]
            if found.empty:
                w.text("; no left intruders at any ε up to ").num("largest_threshold", sweep.index.max())
            else:
                w.text("; the first left intruders appear at ε = ").num("first_threshold", found.index.min(), " (")
                w.num("first_intruders", found.iloc[0], ")")
        w.text(".")
        out.append(w.sentence)
    methods = configurations(runs) if len(last) > 1 else {}
    if FULL in {methods.get(run) for run in last} and len({methods.get(run) for run in last}) > 1:
        both = pd.concat(last.values(), ignore_index=True)
        eps, k = intr.setting(both)
        counts = {run: intr.at(rows, eps, k) for run, rows in last.items()}
        counts = {run: c for run, c in counts.items() if not c.empty}
        common = set.intersection(*(set(c["module"]) for c in counts.values())) if counts else set()
        if common:
            means = {run: float(c[c["module"].isin(common)]["intruder_count"].mean()) for run, c in counts.items()}
            w = Writer("intruders", None)
            w.text("Against full fine-tuning, at ε = ").num("threshold", eps, ", k = ").num("top_k", k)
            w.text(", left vectors, last checkpoints, over the ").num("common_modules", len(common), " modules every run has. ")
            if len(set(means.values())) == 1:  # a ranking of equal values would only list names
                w.text("Intruders per module (mean): ").num("intruders_mean", next(iter(means.values())), " in every run.")
            else:
                ranking(w, "Intruders per module (mean)", means, "intruders_mean")
            against_full(w, means, methods)
            out.append(w.sentence)
    return out


def headline(runs: Sequence[Run]) -> Chart:
    """The intruder count at the default (ε, k), left vectors, per layer and role, at each run's last checkpoint."""
    from lab.present import intruders as intr
    from lab.present.figures import intruders as figures

    rows = last_rows_of(runs, "intruders")
    if rows.empty:
        return figures.heatmap_chart(rows, intr.DEFAULT_THRESHOLD, intr.DEFAULT_TOP_K)
    eps, k = intr.setting(rows)
    return figures.heatmap_chart(rows, eps, k, title=f"Intruders at ε = {eps:g}, k = {k} (left vectors), "
                                                     "layer × role (last checkpoint of each run)")


SIDES = ["left", "right"]


def section(page: Page) -> None:
    """The layer × role counts at (ε, k) on both sides (the default setting and both sides unless the reader
    chooses) at each run's last checkpoint, the count against ε at k over every checkpoint, and the totals of the
    sweep per run, checkpoint, side and k; the rows and the examined vectors."""
    from lab.present import intruders as intr
    from lab.present.figures import intruders as figures

    rows = page.read("intruders")
    rows = rows[rows["checkpoint"].astype(str) != "controls"] if not rows.empty else rows
    if rows.empty:
        page.message("No intruder counts in these runs (or in this selection: widen the filters in the sidebar); the "
                     "intruders table needs --base and W in memory.")
        return
    eps, k = intr.setting(rows)
    eps = page.choose("ε (threshold)", sorted(float(t) for t in rows["threshold"].unique()), eps)
    k = page.choose("k (top singular vectors)", sorted(int(x) for x in rows["top_k"].unique()), k)
    sides = page.choose_many("Sides", SIDES, SIDES,
                             help="left: output (column-space) singular vectors; right: input (row-space) ones")

    page.heading("Where the intruders are")
    last = pd.concat([g[g["checkpoint"].astype(str) == last_checkpoint(g)] for _, g in rows.groupby("run", sort=True)],
                     ignore_index=True)
    for side in sides:
        page.figure(partial(figures.heatmap_chart, last, eps, k, side,
                            title=f"Intruders at ε = {eps:g}, k = {k} ({side} vectors), layer × role (last checkpoints)"))
    page.heading("How the count depends on ε")
    page.figure(partial(figures.sweep_chart, rows, k, title=f"Intruders against ε at k = {k} (every checkpoint; "
                                                             "earlier ones faint)"))

    page.heading("The sweep's totals")
    page.table("Intruders over the sweep: total over modules per run, checkpoint, side and k", intr.digest(rows),
               "examined: singular vectors of W + ΔW examined, summed over modules (fewer than k × modules for small "
               "matrices)")
    page.table("intruders rows", rows, reference=True)
    if page.interactive and page.computed("intruder_vectors"):  # reference rows only: the report would not show them
        page.table("intruder_vectors: each examined vector's σ and largest |cos| with W's (apply any threshold)",
                   page.read("intruder_vectors"), reference=True)


FAMILY = Family(
    'intruders', 'Intruder dimensions (ε × k sweep)', ('intruders', 'intruder_vectors'), THEORY,
    icon=':material/call_split:',
    hint='Run `lab analyze ... --base BASE --probes intruders` to add it.',
    findings=findings, headline=headline, section=section, cost=3,
)
