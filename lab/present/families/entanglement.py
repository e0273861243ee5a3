"""The internal entanglement family (entanglement, entanglement_summary): its theory, findings, headline figure and section."""

from __future__ import annotations

import math
from functools import partial
from typing import Sequence

import pandas as pd

from lab.present import load
from lab.present.family import Family
from lab.present.figures import entanglement as figures
from lab.present.figures.common import Chart
from lab.present.frames import CONTROL_SOURCES, ID, distinct, matching_controls
from lab.present.page import Page
from lab.present.picks import MAX_ROLES, at_last, last_checkpoint, last_rows, measured, representative_module, representative_modules
from lab.present.sentences import Sentence, Writer, ranking, who
from lab.present.valleys import entanglement_valleys
from lab.store import Run

THEORY = (
    'ΔW (m×n) is read as a quantum state ψ = vec(ΔW)/‖ΔW‖_F on a chain of sites: the prime factors of m, then those'
    ' of n. At each cut k the squared singular values p_i of ψ reshaped to (D_left, D_right) give the von Neumann '
    "entropy S_k = −Σ p_i ln p_i in nats. Two baselines: the maximum ln min(D_left, D_right), and Page's mean "
    'entropy of a random state, S_Page ≈ ln d_A − d_A/(2 d_B) for d_A ≤ d_B (Page, Phys. Rev. Lett. 71, 1291, '
    "1993). At the row|column cut S is the entropy of ΔW's normalised squared singular values, so a rank-r update "
    "has S ≤ ln r there: the entanglement valley, while the outer cuts follow a volume law near Page's curve. "
    "Controls show where 'no structure' sits for each shape: a Gaussian matrix (source = random) and, for a rank-r "
    'adapter, a product of Gaussian factors of rank r (source = random_lora, an untrained LoRA).'
)


def findings(runs: Sequence[Run]) -> list[Sentence]:
    """Per run, at its last checkpoint: the entropy at the row|column cut, its room under ln r, Page's value there,
    the valley's depth and shape and how it compares with the Gaussian controls, with S ≤ ln r as a sanity check;
    across runs, the ranking by depth."""
    with_table = [r for r in runs if r.has_table("entanglement")]
    if not with_table:
        return []
    valleys = entanglement_valleys(with_table)
    out, depths = [], {}
    for run in with_table:
        all_rows = valleys[valleys["run"] == run.name]
        ck, rows = at_last(all_rows)
        rows = rows[rows["valley_entropy"].notna()]
        if rows.empty:
            continue
        w = Writer("entanglement", run.name)
        who(w, run.name, ck, rows)
        w.text("entropy at the row|column cut ").num("valley_entropy_mean", rows["valley_entropy"].mean())
        if len(rows) > 1:
            w.text(" ± ").num("valley_entropy_sd", rows["valley_entropy"].std())
        w.text(" nats in ").num("modules", len(rows), " modules")
        check = None  # S ≤ ln r is an identity of the algebra: stated as a sanity check, not as a finding
        if "ln_rank_bound" in rows.columns:
            low = rows[rows["ln_rank_bound"] < rows["valley_max"] - 1e-12]  # a rank bound below the shape's: adapters
            if not low.empty:
                bounds = sorted(low["rank_bound"].dropna().astype(int).unique())
                check = (int((low["valley_entropy"] <= low["ln_rank_bound"] + 1e-9).sum()), len(low))
                w.text(", ").num("room_below_ln_r", (low["ln_rank_bound"] - low["valley_entropy"]).mean(),
                                 " nats under the rank bound ln r on average")
                if len(bounds) == 1:
                    w.text(f" (ln {bounds[0]} = ").num("ln_r", math.log(bounds[0]), ")")
        w.text("; Page's value there ").num("page_mean", rows["valley_page"].mean())
        w.text(", so the valley is ").num("depth_mean", rows["depth"].mean(), " nats deep")
        shaped = rows.dropna(subset=[c for c in ("valley_neighbour_depth", "valley_width", "deepest_cut", "valley_cut")
                                     if c in rows.columns]) if "valley_neighbour_depth" in rows.columns else rows.iloc[0:0]
        if not shaped.empty:
            w.text(", ").num("neighbour_depth_mean", shaped["valley_neighbour_depth"].mean(), " nats below its neighbouring cuts, ")
            w.num("width_median", shaped["valley_width"].median(), " cuts wide at half depth (median), deepest at the row|column cut in ")
            w.num("deepest_at_cut", int((shaped["deepest_cut"] == shaped["valley_cut"]).sum()), "/").num("shaped", len(shaped), " modules")
        controls = all_rows[all_rows["source"] == "random"] if "source" in all_rows.columns else all_rows.iloc[0:0]
        if not controls.empty:
            gap = rows["depth"].mean() - controls["depth"].mean()
            w.text("; ").num("depth_minus_control", gap, " nats deeper than the Gaussian controls' (")
            w.num("control_depth_mean", controls["depth"].mean(), ")")
        w.text(".")
        if check is not None:
            w.text(" Sanity check S ≤ ln r: ").num("below_ln_r", check[0], "/").num("rank_bounded", check[1])
            w.text(" passed." if check[0] == check[1] else " FAILED (a rank bound is wrong).")
        depths[run.name] = float(rows["depth"].mean())
        out.append(w.sentence)
    if len(depths) > 1:
        w = Writer("entanglement", None)
        ranking(w, "Deepest valley (mean depth below Page's value, nats)", depths, "depth_mean")
        out.append(w.sentence)
    return out


PROFILE_COLUMNS = ID + ["source", "cut", "row_sites", "n_sites", "d_left", "d_right", "entropy", "page_entropy",
                        "max_entropy"]


def headline(runs: Sequence[Run]) -> Chart:
    """The entropy profile of one module every run has (a q projection at the middle layer when there is one), at
    each run's last checkpoint, with the controls of its shape and the adapters' ln r."""
    with_table = [r for r in runs if r.has_table("entanglement")]
    module = representative_module(with_table, "entanglement")
    rows, controls, bounds = [], [], []
    for run in with_table:
        mine = last_rows(run, "entanglement", PROFILE_COLUMNS, [("module", "==", module)])
        if mine.empty:
            continue
        rows.append(mine)
        controls.append(load.read(run, "entanglement", PROFILE_COLUMNS, [("source", "in", list(CONTROL_SOURCES))]))
        d = load.read(run, "deltas", ["checkpoint", "module", "rows", "cols", "rank_bound"], [("module", "==", module)])
        d = d[d["rank_bound"] < d[["rows", "cols"]].min(axis=1)]  # a ceiling below the shape's own maximum: adapters
        bounds += d["rank_bound"].dropna().astype(int).unique().tolist()
    profile = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    ctrl = pd.concat([c for c in controls if not c.empty], ignore_index=True) if any(not c.empty for c in controls) else None
    bounds = sorted(set(bounds))
    return figures.profile_chart(profile, matching_controls(profile, ctrl, bounds) if ctrl is not None else None,
                                 rank_bound=bounds, title=f"Entanglement profile: {module} (last checkpoints)")


LAST, EVERY = "last checkpoint of each run", "every checkpoint shown"
OVERLAY, SIDE_BY_SIDE = "overlay", "side by side"
KEYS = ["run", "checkpoint", "module"]
SUMMARY_CAPTION = (
    "depth = Page's value − entropy at the cut; depth_below_neighbours = mean entropy at the two neighbouring cuts − "
    "entropy at the cut; width = consecutive cuts at least half as deep below Page; outer_page_ratio = mean S/S_Page "
    "over the other cuts; the controls (source random / random_lora) show where chance sits. entropy_at_cut ≤ "
    "ln_rank_bound is an identity of the algebra (a sanity check, not a finding)")


def section(page: Page) -> None:
    """With a reader (the dashboard): one chosen module's profile across runs, checkpoints and steps (overlaid or
    side by side) and the layer × cut map of a chosen run, checkpoint and role. Then the valley at the row|column
    cut by layer (each run's last checkpoint unless the reader chooses every one) and, per run, the profiles of
    its representative modules (one per role at the middle layer), its layer × cut maps per role at its last
    checkpoint and its valley over steps (without a reader, the report; a reader picks them above instead).
    Last, the valley per run, checkpoint, source and role, and the rows."""
    every = entanglement_valleys(page.runs, partial(_unfiltered, page))
    if every.empty:
        page.message("the entanglement table is empty for these runs")
        return
    index = page.index()
    modules = distinct(index, "module")
    if not modules:
        page.message("No modules in this selection: widen the filters in the sidebar.")
        return
    # the valleys of the modules shown (on the dashboard: inside the selection), with the runs' controls
    shown = pd.MultiIndex.from_frame(every[KEYS]).isin(pd.MultiIndex.from_frame(index[KEYS]))
    every = every[shown | ~every.index.isin(measured(every).index)]
    v = measured(every)
    last = {run: last_checkpoint(rows) for run, rows in index.groupby("run", sort=False)}
    if page.interactive:
        controls = _unfiltered(page, page.runs, "entanglement", PROFILE_COLUMNS,
                               [("source", "in", list(CONTROL_SOURCES))])
        _chosen_profile(page, index, modules, controls)
        _chosen_heatmap(page, index)

    page.heading("Valley at the row|column cut")
    which = page.choose("Checkpoints in the valley figure", [LAST, EVERY], LAST, horizontal=True)
    at_last_ck = v[[last.get(run) == ck for run, ck in zip(v["run"], v["checkpoint"])]]
    page.figure(partial(figures.valley_chart, at_last_ck if which == LAST else v,
                        title=f"Entanglement valley by layer ({which})"))
    if page.interactive:
        if v["step"].nunique() > 1:
            page.figure(partial(figures.steps_chart, v), detail=True)
    else:
        for run in page.runs:
            _run_details(page, run, last.get(run.name), v)

    table = every.copy()
    table["source"] = table["source"] if "source" in table.columns else "delta"
    agg = {"modules": ("depth", "size"), "entropy_at_cut": ("valley_entropy", "mean"),
           "page_at_cut": ("valley_page", "mean"), "depth": ("depth", "mean")}
    if "ln_rank_bound" in table.columns:
        agg["ln_rank_bound"] = ("ln_rank_bound", "max")
    if "valley_neighbour_depth" in table.columns:  # the valley's shape (entanglement_summary columns)
        agg.update(depth_below_neighbours=("valley_neighbour_depth", "mean"), width=("valley_width", "mean"),
                   outer_page_ratio=("page_ratio_outer", "mean"))
    summary = table.groupby(["run", "checkpoint", "source", "role"], sort=False, dropna=False).agg(**agg).reset_index()
    page.table("Valley at the row|column cut (means over layers, nats)", summary, SUMMARY_CAPTION)
    page.table("Valley rows", v, reference=True)
    if page.computed("entanglement_summary"):
        page.table("entanglement_summary table", page.read("entanglement_summary"), reference=True)


def _unfiltered(page: Page, runs: Sequence[Run], table: str, columns: Sequence[str] | None,
                filters: Sequence[tuple] = ()) -> pd.DataFrame:
    """Rows of ``runs`` whatever the sidebar selects: every valley (the selection is applied to them after) and
    the controls (one random matrix per shape, outside every checkpoint)."""
    return page.read(table, columns, filters, runs=runs, checkpoint=False, role=False, step=False, layer=False)


def _chosen_profile(page: Page, index: pd.DataFrame, modules: list, controls: pd.DataFrame) -> None:
    """The profile of the module the reader chooses, every run and checkpoint shown overlaid or one figure each."""
    page.heading("Profile across cuts")
    module = page.choose("Module", modules, modules[len(modules) // 2],
                         help="Filter by role and layer in the sidebar to shorten this list.")
    rows = measured(page.read("entanglement", PROFILE_COLUMNS, [("module", "==", module)], role=False))
    mine = index[index["module"] == module]
    bounds = mine["rank_bound"].dropna().unique().tolist()
    layout = page.choose("Compare runs / checkpoints / steps", [OVERLAY, SIDE_BY_SIDE], OVERLAY, horizontal=True)
    if rows.empty:
        page.message("This module has no entanglement rows in the selection.")
    elif layout == OVERLAY:
        page.figure(partial(figures.profile_chart, rows, matching_controls(rows, controls, bounds), rank_bound=bounds),
                    detail=True)
    else:
        for (run, ck), g in rows.groupby(["run", "checkpoint"], sort=False):
            r = mine.loc[(mine["run"] == run) & (mine["checkpoint"] == ck), "rank_bound"].dropna().unique().tolist()
            page.figure(partial(figures.profile_chart, g, matching_controls(g, controls, r), rank_bound=r,
                                title=f"{run} · {ck}"), detail=True)


def _chosen_heatmap(page: Page, index: pd.DataFrame) -> None:
    """The layer × cut map (S/S_Page) of the run, checkpoint and role the reader chooses."""
    page.heading("Layer × cut")
    pairs = index[["run", "checkpoint"]].drop_duplicates()
    labels = [f"{r} · {c}" for r, c in pairs.itertuples(index=False)]
    pair = page.choose("Run · checkpoint", labels, labels[-1])
    run_name, ck = pairs.iloc[labels.index(pair)]
    roles = distinct(index, "role")
    role = page.choose("Role", roles, roles[0] if roles else None)
    heat = page.read("entanglement", ["layer", "role", "source", "cut", "row_sites", "entropy", "page_entropy"],
                     [("checkpoint", "==", ck), ("role", "==", role)],
                     runs=[r for r in page.runs if r.name == run_name], checkpoint=False, role=False)
    page.figure(partial(figures.heatmap_chart, heat, title=f"Layer × cut, S/S_Page: role {role} ({run_name}, {ck})"),
                detail=True)


def _run_details(page: Page, run: Run, ck: str | None, v: pd.DataFrame) -> None:
    """One run's representative profiles (every checkpoint of each), its layer × cut maps per role at its last
    checkpoint ``ck`` and its valley over training steps."""
    if ck is None or not run.has_table("entanglement"):
        return
    controls = _unfiltered(page, [run], "entanglement", PROFILE_COLUMNS, [("source", "in", list(CONTROL_SOURCES))])
    for _, pick in representative_modules(run, ck).iterrows():
        module_rows = page.read("entanglement", PROFILE_COLUMNS, [("module", "==", pick["module"])], runs=[run],
                                role=False)
        page.figure(partial(
            figures.profile_chart, module_rows, matching_controls(module_rows, controls, pick["rank_bound"]),
            rank_bound=pick["rank_bound"], title=f"Profile: {pick['module']} ({run.name})"), detail=True)
    at_last_ck = page.read("entanglement", PROFILE_COLUMNS, [("checkpoint", "==", ck)], runs=[run], checkpoint=False,
                           role=False)
    for role in sorted(at_last_ck["role"].dropna().unique())[:MAX_ROLES]:
        page.figure(partial(figures.heatmap_chart, at_last_ck[at_last_ck["role"] == role],
                            title=f"Layer × cut, S/S_Page: role {role} ({run.name}, {ck})"), detail=True)
    run_valleys = v[v["run"] == run.name]
    if run_valleys["step"].nunique() > 1:
        page.figure(partial(figures.steps_chart, run_valleys, title=f"Valley over training steps ({run.name})"),
                    detail=True)


FAMILY = Family(
    'entanglement', 'Internal entanglement', ('entanglement', 'entanglement_summary'), THEORY,
    icon=':material/timeline:',
    hint='Run `lab analyze ... --probes entanglement` to add it.',
    findings=findings, headline=headline, section=section, cost=2,
)
