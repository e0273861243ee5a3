"""The minimal semantic units family (msu, msu_units, msu_similarity): its theory, findings, headline figure and section."""

from __future__ import annotations

from functools import partial
from typing import Sequence

import pandas as pd

from lab.present import digests
from lab.present.family import Family
from lab.present.figures import msu as figures
from lab.present.figures.common import Chart, checkpoints_in_order
from lab.present.page import Page
from lab.present.picks import at_last, last_checkpoint, last_rows_of
from lab.present.sentences import Sentence, Writer, per_run, ranking, who
from lab.store import Run

THEORY = (
    'LoRA-LEGO (arXiv 2409.16167): rank i of an adapter, U_i = s·b_i·a_iᵀ, is a minimal semantic unit and ΔW = Σ_i '
    "U_i. Per module: each unit's size c_i = ‖U_i‖_F, its own share c_i²/Σc² and its Gram-weighted share ⟨U_i, "
    'ΔW⟩_F/‖ΔW‖_F² (the units are not orthogonal; the difference is the cross-term energy), the effective number of'
    " units exp(H(own shares)) between 1 and r, the largest |cos| between the a_i's and between the b_i's, and the "
    'check that permuting the ranks of B and A together leaves ΔW unchanged (machine precision).'
)


def findings(runs: Sequence[Run]) -> list[Sentence]:
    """Per run, at its last checkpoint: the median effective number of units of r, the mean cross-term energy and
    the largest permutation error; across runs, the ranking by effective units per rank."""
    cols = ["run", "checkpoint", "step", "module", "rank", "effective_units", "effective_units_ratio", "cross_energy",
            "permutation_error_max"]
    out, ratio = [], {}
    for run, rows in per_run(runs, "msu", cols):
        ck, rows = at_last(rows)
        rows = rows[rows["rank"].notna()]
        if rows.empty:
            continue
        w = Writer("msu", run)
        who(w, run, ck, rows)
        ranks = sorted(rows["rank"].astype(int).unique())
        w.text("effective number of units ").num("effective_units_median", rows["effective_units"].median())
        w.text(" of r = " + "/".join(str(r) for r in ranks) + " (median over ").num("modules", len(rows), " modules; ratio ")
        w.num("effective_units_ratio_median", rows["effective_units_ratio"].median(), ")")
        w.text("; cross terms between units hold ").num("cross_energy_mean", rows["cross_energy"].mean())
        w.text(" of ‖ΔW‖_F² (mean); permuting the ranks changes ΔW by at most ").num("permutation_error_max", rows["permutation_error_max"].max())
        w.text(" (relative).")
        ratio[run] = float(rows["effective_units_ratio"].median())
        out.append(w.sentence)
    if len(ratio) > 1:
        w = Writer("msu", None)
        ranking(w, "Fewest effective units per rank", ratio, "effective_units_ratio_median", descending=False)
        out.append(w.sentence)
    return out


def headline(runs: Sequence[Run]) -> Chart:
    """The mean share of each unit (own and Gram-weighted) at each run's last checkpoint."""
    return figures.shares_chart(last_rows_of(runs, "msu_units"),
                                title="How the update is shared among its units (last checkpoint of each run)")


AT_CHOSEN, EVERY = "the checkpoint chosen", "every checkpoint (earlier ones faint)"


def section(page: Page) -> None:
    """Shares of the units and the effective number of units (every checkpoint; earlier ones faint); per run, at a
    checkpoint (its last unless the reader chooses), how alike the units are per module and one module's units
    (the middle one unless the reader chooses); the means per role; the rows."""
    msu = page.read("msu")
    if msu.empty:
        page.message("No adapter modules in these runs (or in this selection: widen the filters in the sidebar).")
        return
    units = page.read("msu_units")
    if not units.empty:
        page.figure(partial(figures.shares_chart, units, title="How the update is shared among its units "
                                                               "(every checkpoint; earlier ones faint)"))
    page.figure(partial(figures.effective_chart, msu))

    page.heading("Per run: how alike the units are, and one module's units")
    which = page.choose("Unit contributions at", [AT_CHOSEN, EVERY], AT_CHOSEN, horizontal=True)
    for run in page.runs:
        mine = msu[msu["run"] == run.name]
        if mine.empty:
            continue
        ck = page.choose(f"Checkpoint of {run.name}", [c for c, _ in checkpoints_in_order(mine)],
                         last_checkpoint(mine))
        page.figure(partial(figures.similarity_chart, mine[mine["checkpoint"] == ck],
                            title=f"How alike the units are, per module ({run.name}, {ck})"), detail=True)
        run_units = units[units["run"] == run.name] if not units.empty else units
        at_ck = run_units[run_units["checkpoint"] == ck] if not run_units.empty else run_units
        if at_ck.empty:
            continue
        modules = sorted(at_ck["module"].unique())
        module = page.choose(f"Module of {run.name}", modules, modules[len(modules) // 2])
        shown = run_units if which == EVERY else at_ck
        at = "every checkpoint" if which == EVERY else ck
        page.figure(partial(figures.contributions_chart, shown[shown["module"] == module],
                            title=f"Unit contributions: {module} ({run.name}, {at})"), detail=True)
        if page.interactive:  # one chosen module's unit × unit map: the report's HTML keeps to the map per module
            similar = page.read("msu_similarity", None, [("checkpoint", "==", ck), ("module", "==", module)],
                                runs=[run])
            page.figure(partial(figures.unit_similarity_heatmap, similar,
                                title=f"Unit × unit similarity: {module} ({run.name}, {ck})"), detail=True)

    page.table("Units per role (means over layers)", digests.msu(msu))
    page.table("msu rows (similarity: cos_a_*, cos_b_*; permutation errors)", msu, reference=True)
    notes = msu["note"].dropna() if "note" in msu.columns else pd.Series(dtype=str)
    if (notes != "").any():
        page.message("; ".join(sorted(set(notes[notes != ""]))))


FAMILY = Family(
    'msu', 'Minimal semantic units', ('msu', 'msu_units', 'msu_similarity'), THEORY,
    icon=':material/extension:',
    hint='Run `lab analyze ADAPTER --probes msu` to add it.',
    findings=findings, headline=headline, section=section,
)
