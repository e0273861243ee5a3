"""The report's section builders, one per probe family: which charts and summary tables a
reader gets from each computed table.

To keep a report readable on large runs it shows, per run, one representative module per role
(the middle layer) in detail and every layer only in aggregate charts; the dashboard has the rest.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from lab.report import load
from lab.report.content import Section, TableBlock
from lab.report.figures import attention, deltas as deltas_fig, entanglement as ent_fig, spectra as spec_fig, thresholds
from lab.report.frames import CONTROL_SOURCES, ID, matching_controls, measured, valleys, valleys_from_summary
from lab.store import Run

MAX_ROLES = 4


def checkpoints(run: Run) -> pd.DataFrame:
    """The run's checkpoints in training order (by step, then name), from the deltas index; controls excluded."""
    d = load.read(run.path, "deltas", ["checkpoint", "step"]).drop_duplicates()
    d = d[d["checkpoint"] != "controls"]
    return d.sort_values(["step", "checkpoint"], na_position="first").reset_index(drop=True)


def latest_checkpoint(run: Run) -> str | None:
    """The last checkpoint of a run in training order (None when the run read nothing)."""
    order = checkpoints(run)
    return None if order.empty else str(order["checkpoint"].iloc[-1])


def representative_modules(run: Run, checkpoint: str) -> pd.DataFrame:
    """Per role, the module at the middle layer of one checkpoint (module, layer, role, rank_bound)."""
    d = load.read(run.path, "deltas", ["checkpoint", "module", "layer", "role", "rank_bound"],
                  [("checkpoint", "==", checkpoint)])
    d = d[d["layer"].notna()]
    picks = []
    for _, g in d.groupby("role", sort=True):
        layers = sorted(g["layer"].unique())
        middle = layers[len(layers) // 2]
        picks.append(g[g["layer"] == middle].iloc[0])
    return pd.DataFrame(picks[:MAX_ROLES])


def build_deltas(section: Section, runs: list[Run]) -> None:
    """Update sizes by layer per run, and one summary row per checkpoint and kind."""
    d = load.read_runs(runs, "deltas", ID + ["kind", "rank_bound", "fro_norm"])
    for run_name, g in d.groupby("run", sort=True):
        section.charts.append(deltas_fig.norms_chart(g, title=f"Update size ‖ΔW‖_F by layer: {run_name}"))
    summary = (d.groupby(["run", "checkpoint", "kind"], sort=False, dropna=False)
                 .agg(step=("step", "first"), modules=("module", "size"), max_rank_bound=("rank_bound", "max"),
                      mean_fro_norm=("fro_norm", "mean"))
                 .reset_index())
    section.tables.append(TableBlock.from_frame("Updates per checkpoint", summary,
                                                "modules read and their mean Frobenius norm"))


def entanglement_valleys(runs: list[Run]) -> pd.DataFrame:
    """One row per profile with the valley at the row|column cut: from the probe's summary table when
    every run has it (one row per matrix), else computed from the per-cut rows."""
    with_profiles = [r for r in runs if load.has_table(r.path, "entanglement")]
    if with_profiles and all(load.has_table(r.path, "entanglement_summary") for r in with_profiles):
        return valleys_from_summary(load.read_runs(with_profiles, "entanglement_summary"))
    cols = ID + ["source", "cut", "row_sites", "entropy", "page_entropy", "max_entropy"]
    deltas = load.read_runs(runs, "deltas", ["run", "checkpoint", "module", "rank_bound"])
    return valleys(load.read_runs(with_profiles, "entanglement", cols), deltas)


def build_entanglement(section: Section, runs: list[Run]) -> None:
    """Valley comparison over runs, then per run: profiles of representative modules, heatmaps, steps."""
    v = entanglement_valleys(runs)
    if v.empty:
        section.message = "the entanglement table is empty for these runs"
        return
    last = {r.name: latest_checkpoint(r) for r in runs}
    v_last = v[[last.get(run) == ck for run, ck in zip(v["run"], v["checkpoint"])]]
    section.charts.append(ent_fig.valley_chart(v_last, title="Entanglement valley by layer (last checkpoint of each run)"))
    cols = ID + ["source", "cut", "row_sites", "n_sites", "d_left", "d_right", "entropy", "page_entropy", "max_entropy"]
    for run in runs:
        ck = last.get(run.name)
        if ck is None or not load.has_table(run.path, "entanglement"):
            continue
        controls = load.read(run.path, "entanglement", cols, [("source", "in", list(CONTROL_SOURCES))])
        for _, pick in representative_modules(run, ck).iterrows():
            module_rows = load.read(run.path, "entanglement", cols, [("module", "==", pick["module"])])
            section.charts.append(ent_fig.profile_chart(
                module_rows, matching_controls(module_rows, controls, pick["rank_bound"]),
                rank_bound=pick["rank_bound"], title=f"Profile: {pick['module']} ({run.name})"))
        at_last = load.read(run.path, "entanglement", cols, [("checkpoint", "==", ck)])
        for role in sorted(at_last["role"].dropna().unique())[:MAX_ROLES]:
            section.charts.append(ent_fig.heatmap_chart(at_last[at_last["role"] == role],
                                                        title=f"Layer × cut, S/S_Page: role {role} ({run.name}, {ck})"))
        run_valleys = measured(v[v["run"] == run.name])
        if run_valleys["step"].nunique() > 1:
            section.charts.append(ent_fig.steps_chart(run_valleys, title=f"Valley over training steps ({run.name})"))
    table = v.copy()
    table["source"] = table["source"] if "source" in table.columns else "delta"
    agg = {"modules": ("depth", "size"), "entropy_at_cut": ("valley_entropy", "mean"),
           "page_at_cut": ("valley_page", "mean"), "depth": ("depth", "mean")}
    if "ln_rank_bound" in table.columns:
        agg["ln_rank_bound"] = ("ln_rank_bound", "max")
    summary = table.groupby(["run", "checkpoint", "source", "role"], sort=False, dropna=False).agg(**agg).reset_index()
    section.tables.append(TableBlock.from_frame(
        "Valley at the row|column cut (means over layers, nats)", summary,
        "entropy_at_cut ≤ ln_rank_bound always holds; depth = Page's value − entropy at the cut; "
        "the controls (source random / random_lora) show where chance sits"))


def build_spectra(section: Section, runs: list[Run]) -> None:
    """Ranks by layer over runs, σ of representative modules, energy ranks, and a per-role summary."""
    cols = ID + ["source", "rank_bound", "effective_rank", "stable_rank", "energy_rank_90", "energy_rank_99",
                 "utilization", "numerical_rank"]
    s = load.read_runs(runs, "spectra", cols)
    if s.empty:
        section.message = "the spectra table is empty for these runs"
        return
    s = measured(s)
    last = {r.name: latest_checkpoint(r) for r in runs}
    s_last = s[[last.get(run) == ck for run, ck in zip(s["run"], s["checkpoint"])]]
    section.charts.append(spec_fig.ranks_chart(s_last, title="Effective and stable rank by layer (last checkpoint of each run)"))
    section.charts.append(spec_fig.energy_chart(s_last, title="Energy ranks by layer (last checkpoint of each run)"))
    for run in runs:
        ck = last.get(run.name)
        if ck is None or not load.has_table(run.path, "singular_values"):
            continue
        picks = representative_modules(run, ck)
        if picks.empty:
            continue
        sv = load.read(run.path, "singular_values", None,
                       [("checkpoint", "==", ck), ("module", "in", picks["module"].tolist())])
        if not sv.empty:
            section.charts.append(spec_fig.sigma_chart(sv, title=f"Singular values ({run.name}, {ck})"))
    numeric = [c for c in cols[8:] if c in s.columns]
    summary = s.groupby(["run", "checkpoint", "role"], sort=False, dropna=False)[numeric].mean().reset_index()
    section.tables.append(TableBlock.from_frame("Ranks per role (means over layers)", summary))


def build_thresholds(section: Section, runs: list[Run]) -> None:
    """The norm ratio to √ln L when the table has the columns the design names, else the table itself."""
    rows = load.read_runs(runs, "thresholds")
    chart = thresholds.ratio_chart(rows)
    if chart is not None:
        section.charts.append(chart)
    table_only(section, runs, rows)


def build_attention(section: Section, runs: list[Run]) -> None:
    """Base vs tuned attention profiles when the table has the columns the design names, else the table."""
    rows = load.read_runs(runs, "attention_entanglement")
    chart = attention.profile_chart(rows)
    if chart is not None:
        section.charts.append(chart)
    table_only(section, runs, rows)


def table_only(section: Section, runs: list[Run], rows: pd.DataFrame | None = None) -> None:
    """A table no figure is written for yet: show its first rows, so a new probe is visible at once."""
    table = next(t for t in section_tables(section) if any(load.has_table(r.path, t) for r in runs))
    rows = load.read_runs(runs, table) if rows is None else rows
    numeric = rows.select_dtypes(include=[np.number]).columns
    keep = [c for c in rows.columns if c in ID or c in numeric][:10]
    section.tables.append(TableBlock.from_frame(f"{table} (first rows)", rows[keep], max_rows=20))


def section_tables(section: Section) -> tuple[str, ...]:
    from lab.report.theory import BY_KEY

    return BY_KEY[section.key].tables


BUILDERS: dict[str, Callable[[Section, list[Run]], None]] = {
    "deltas": build_deltas,
    "entanglement": build_entanglement,
    "spectra": build_spectra,
    "thresholds": build_thresholds,
    "attention": build_attention,
}
