"""The rank spectra family (spectra, singular_values): its theory, findings, headline figure and section."""

from __future__ import annotations

from functools import partial
from typing import Sequence

import pandas as pd

from lab.present.figures import spectra as figures
from lab.present.figures.common import Chart
from lab.present.frames import ID, distinct
from lab.present.family import Family
from lab.present.page import Page
from lab.present.picks import (at_last, last_rows_of, latest_checkpoint, measured, representative_module,
                               representative_modules)
from lab.present.sentences import Sentence, Writer, per_run, ranking, who
from lab.store import Run

THEORY = (
    'All singular values σ_i of ΔW. Stable rank ‖ΔW‖_F²/‖ΔW‖_2²; effective rank exp(H(σ/Σσ)) (Roy & Vetterli, '
    'EUSIPCO 2007) and its σ² variant exp(H(σ²/Σσ²)), which equals exp of the row|column entanglement entropy; the '
    'ranks holding 90 % and 99 % of ‖ΔW‖_F² (how far the update could be compressed after training); rank '
    "utilisation = effective rank / r for adapters; with a base, the overlap of ΔW's top singular subspaces with "
    "W's and the count of 'intruder' directions."
)



def findings(runs: Sequence[Run]) -> list[Sentence]:
    """Per run, at its last checkpoint: median stable and effective rank, utilisation, the 99 % energy rank and the
    intruder directions (most in which layer); across runs, the ranking by utilisation."""
    cols = ["run", "checkpoint", "step", "module", "layer", "source", "stable_rank", "effective_rank", "utilization",
            "energy_rank_99", "intruder_count"]
    out, util = [], {}
    for run, rows in per_run(runs, "spectra", cols):
        ck, rows = at_last(rows)
        if rows.empty:
            continue
        w = Writer("spectra", run)
        who(w, run, ck, rows)
        w.text("stable rank ").num("stable_rank_median", rows["stable_rank"].median())
        w.text(" and effective rank ").num("effective_rank_median", rows["effective_rank"].median(), " (medians over ")
        w.num("modules", len(rows), " modules); ")
        w.text("rank utilisation ").num("utilization_median", rows["utilization"].median())
        w.text("; 99 % of ‖ΔW‖_F² in ").num("energy_rank_99_median", rows["energy_rank_99"].median(), " directions (median)")
        intruders = rows["intruder_count"].dropna() if "intruder_count" in rows.columns else pd.Series(dtype=float)
        if not intruders.empty:
            w.text("; ").num("intruders", intruders.sum(), " intruder directions")
            by_layer = rows.dropna(subset=["intruder_count", "layer"]).groupby("layer")["intruder_count"].sum()
            if not by_layer.empty and by_layer.max() > 0:
                w.text(", most in layer ").num("intruder_layer", by_layer.idxmax(), " (").num("intruders_in_layer", by_layer.max(), ")")
        w.text(".")
        util[run] = float(rows["utilization"].median())
        out.append(w.sentence)
    if len(util) > 1:
        w = Writer("spectra", None)
        ranking(w, "Lowest rank utilisation (median effective rank / rank bound)", util, "utilization_median",
                descending=False)
        out.append(w.sentence)
    return out


def headline(runs: Sequence[Run]) -> Chart:
    """σ of one module every run has (a q projection at the middle layer when there is one), at each run's last checkpoint."""
    with_table = [r for r in runs if r.has_table("singular_values")]
    module = representative_module(with_table, "singular_values")
    sv = last_rows_of(with_table, "singular_values", None, [("module", "==", module)])
    return figures.sigma_chart(sv, title=f"Singular values: {module} (last checkpoints)")


RANK_COLUMNS = ["rank_bound", "effective_rank", "stable_rank", "energy_rank_90", "energy_rank_99", "utilization",
                "numerical_rank"]
LAST, EVERY = "last checkpoint of each run", "every checkpoint shown"


def section(page: Page) -> None:
    """Ranks and energy ranks by layer; singular values of chosen modules (one per role at the middle layer
    unless the reader chooses); ranks per role; the rows."""
    spectra = measured(page.read("spectra"))
    if spectra.empty:
        page.message("No spectra in these runs (or in this selection: widen the filters in the sidebar).")
        return
    last = {r.name: latest_checkpoint(r) for r in page.runs}
    at_last_ck = spectra[[last.get(run) == ck for run, ck in zip(spectra["run"], spectra["checkpoint"])]]
    which = page.choose("Checkpoints in the rank figures", [LAST, EVERY], LAST, horizontal=True)
    shown = at_last_ck if which == LAST else spectra
    page.heading("Ranks by layer")
    page.figure(partial(figures.ranks_chart, shown, title=f"Effective and stable rank by layer ({which})"))
    page.figure(partial(figures.energy_chart, shown, title=f"Energy ranks by layer ({which})"))

    page.heading("Singular values")
    if not page.computed("singular_values"):
        page.message("The singular_values table is absent from these runs.")
    else:
        for run in page.runs:
            ck = last.get(run.name)
            if ck is None or not run.has_table("singular_values"):
                continue
            picks = representative_modules(run, ck)
            modules = distinct(spectra[spectra["run"] == run.name], "module")
            chosen = page.choose_many(f"Modules of {run.name}", modules,
                                      picks["module"].tolist() if not picks.empty else [])
            if not chosen:
                continue
            sv = page.read("singular_values", None, [("checkpoint", "==", ck), ("module", "in", list(chosen))],
                           runs=[run], checkpoint=False, role=False)
            if not sv.empty:
                page.figure(partial(figures.sigma_chart, sv, title=f"Singular values ({run.name}, {ck})"), detail=True)

    numeric = [c for c in RANK_COLUMNS[1:] if c in spectra.columns]
    summary = spectra.groupby(["run", "checkpoint", "role"], sort=False, dropna=False)[numeric].mean().reset_index()
    page.table("Ranks per role (means over layers)", summary.rename(columns={c: f"mean {c}" for c in numeric}))
    page.table("spectra rows", spectra[[c for c in ID + ["source"] + RANK_COLUMNS if c in spectra.columns]
                                       + [c for c in spectra.columns if c not in ID + ["source"] + RANK_COLUMNS]],
               reference=True)


FAMILY = Family(
    'spectra', 'Rank spectra', ('spectra', 'singular_values'), THEORY,
    icon=':material/bar_chart:',
    hint='Run `lab analyze ... --probes spectra` to add it.',
    findings=findings, headline=headline, section=section, cost=3,
)
