"""The updates read family (deltas): its theory, findings, headline figure and section."""

from __future__ import annotations

from functools import partial
from typing import Sequence

import numpy as np

from lab.present.family import Family
from lab.present.figures import updates as figures
from lab.present.figures.common import Chart
from lab.present.frames import ID
from lab.present.page import Page
from lab.present.picks import at_last, last_rows_of
from lab.present.sentences import Sentence, Writer, per_run, ranking, who
from lab.store import Run

THEORY = (
    "Each module's update ΔW = W_ft − W_base, or s·B·A for an adapter with PEFT's exact scale s (lora_alpha/r, "
    'lora_alpha/√r with rsLoRA, per-module rank_pattern/alpha_pattern). The Frobenius norm of an adapter is '
    'computed from the r×r Gram matrices, ‖sBA‖_F² = s²·tr((BᵀB)(AAᵀ)), without forming ΔW.'
)


def findings(runs: Sequence[Run]) -> list[Sentence]:
    """Per run, at its last checkpoint: the modules updated (kinds, LoRA ranks), the mean ‖ΔW‖_F and the largest;
    across runs, the ranking by mean ‖ΔW‖_F."""
    out, means = [], {}
    for run, rows in per_run(runs, "deltas", ["run", "checkpoint", "step", "module", "kind", "rank_bound", "fro_norm"]):
        ck, rows = at_last(rows)
        if rows.empty:
            continue
        w = Writer("deltas", run)
        who(w, run, ck, rows)
        kinds = ", ".join(sorted(rows["kind"].dropna().astype(str).unique()))
        w.num("modules", len(rows), f" modules updated ({kinds}")
        if (rows["kind"] == "lora").any():
            ranks = sorted(rows.loc[rows["kind"] == "lora", "rank_bound"].dropna().astype(int).unique())
            w.text(", r = " + "/".join(str(r) for r in ranks))
        finite = rows[np.isfinite(rows["fro_norm"].astype(float))]
        biggest = finite.loc[finite["fro_norm"].idxmax()] if not finite.empty else rows.iloc[0]
        w.text("); ‖ΔW‖_F ").num("mean_fro_norm", rows["fro_norm"].mean(), " on average, largest ")
        w.num("max_fro_norm", biggest["fro_norm"], f" in {biggest['module']}.")
        means[run] = float(rows["fro_norm"].mean())
        out.append(w.sentence)
    if len(means) > 1:
        w = Writer("deltas", None)
        ranking(w, "Largest update (mean ‖ΔW‖_F at the last checkpoint)", means, "mean_fro_norm")
        out.append(w.sentence)
    return out


def headline(runs: Sequence[Run]) -> Chart:
    """‖ΔW‖_F by layer at each run's last checkpoint."""
    rows = last_rows_of(runs, "deltas")
    return figures.norms_chart(rows, title="Update size ‖ΔW‖_F by layer (last checkpoint of each run)")


def section(page: Page) -> None:
    """Update sizes by layer per run, and one summary row per checkpoint and kind. (On the dashboard the
    updates are read on the Runs page, dashboards/views/runs.py.)"""
    d = page.read("deltas", ID + ["kind", "rank_bound", "fro_norm"])
    for run_name, g in d.groupby("run", sort=True):
        page.figure(partial(figures.norms_chart, g, title=f"Update size ‖ΔW‖_F by layer: {run_name}"), detail=True)
    summary = (d.groupby(["run", "checkpoint", "kind"], sort=False, dropna=False)
                 .agg(step=("step", "first"), modules=("module", "size"), max_rank_bound=("rank_bound", "max"),
                      mean_fro_norm=("fro_norm", "mean"))
                 .reset_index())
    page.table("Updates per checkpoint", summary, "modules read and their mean Frobenius norm")


FAMILY = Family(
    'deltas', 'Updates read', ('deltas',), THEORY,
    icon=':material/folder_open:',
    hint='Run `lab analyze CHECKPOINT` to add it.', on_runs_page=True,
    findings=findings, headline=headline, section=section,
)
