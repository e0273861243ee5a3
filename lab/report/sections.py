"""The report's section builders, one per probe family: which charts and summary tables a
reader gets from each computed table.

To keep a report readable on large runs it shows every run and layer in overview figures
(``section.chart``: the HTML and the PDF) and, per run, one representative module per role (the
middle layer) in detail figures (``section.detail``: the HTML only); the dashboard has the rest.
Both take the function that draws the figure (``functools.partial`` of a figure function), so a
figure no requested format shows is never drawn.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import pandas as pd

from lab.present import digests, load
from lab.present.blocks import TableBlock
from lab.present.figures import attention as attention_fig
from lab.present.figures import entanglement as ent_fig, updates as updates_fig
from lab.present.figures import forgetting as forgetting_fig
from lab.present.figures import msu as msu_fig
from lab.present.figures import no_hair as no_hair_fig
from lab.present.figures import thresholds as thresholds_fig
from lab.present.frames import CONTROL_SOURCES, ID, matching_controls, measured
from lab.present.picks import MAX_ROLES, latest_checkpoint, representative_modules
from lab.present.valleys import entanglement_valleys
from lab.report.document import Section
from lab.store import Run

def build_deltas(section: Section, runs: list[Run]) -> None:
    """Update sizes by layer per run, and one summary row per checkpoint and kind."""
    d = load.read_runs(runs, "deltas", ID + ["kind", "rank_bound", "fro_norm"])
    for run_name, g in d.groupby("run", sort=True):
        section.detail(partial(updates_fig.norms_chart, g, title=f"Update size ‖ΔW‖_F by layer: {run_name}"))
    summary = (d.groupby(["run", "checkpoint", "kind"], sort=False, dropna=False)
                 .agg(step=("step", "first"), modules=("module", "size"), max_rank_bound=("rank_bound", "max"),
                      mean_fro_norm=("fro_norm", "mean"))
                 .reset_index())
    section.tables.append(TableBlock.from_frame("Updates per checkpoint", summary,
                                                "modules read and their mean Frobenius norm"))


def build_entanglement(section: Section, runs: list[Run]) -> None:
    """Valley comparison over runs, then per run: profiles of representative modules, heatmaps, steps."""
    v = entanglement_valleys(runs)
    if v.empty:
        section.message = "the entanglement table is empty for these runs"
        return
    last = {r.name: latest_checkpoint(r) for r in runs}
    v_last = v[[last.get(run) == ck for run, ck in zip(v["run"], v["checkpoint"])]]
    section.chart(partial(ent_fig.valley_chart, v_last, title="Entanglement valley by layer (last checkpoint of each run)"))
    cols = ID + ["source", "cut", "row_sites", "n_sites", "d_left", "d_right", "entropy", "page_entropy", "max_entropy"]
    for run in runs:
        ck = last.get(run.name)
        if ck is None or not run.has_table("entanglement"):
            continue
        controls = load.read(run, "entanglement", cols, [("source", "in", list(CONTROL_SOURCES))])
        for _, pick in representative_modules(run, ck).iterrows():
            module_rows = load.read(run, "entanglement", cols, [("module", "==", pick["module"])])
            section.detail(partial(
                ent_fig.profile_chart, module_rows, matching_controls(module_rows, controls, pick["rank_bound"]),
                rank_bound=pick["rank_bound"], title=f"Profile: {pick['module']} ({run.name})"))
        at_last = load.read(run, "entanglement", cols, [("checkpoint", "==", ck)])
        for role in sorted(at_last["role"].dropna().unique())[:MAX_ROLES]:
            section.detail(partial(ent_fig.heatmap_chart, at_last[at_last["role"] == role],
                                   title=f"Layer × cut, S/S_Page: role {role} ({run.name}, {ck})"))
        run_valleys = measured(v[v["run"] == run.name])
        if run_valleys["step"].nunique() > 1:
            section.detail(partial(ent_fig.steps_chart, run_valleys, title=f"Valley over training steps ({run.name})"))
    table = v.copy()
    table["source"] = table["source"] if "source" in table.columns else "delta"
    agg = {"modules": ("depth", "size"), "entropy_at_cut": ("valley_entropy", "mean"),
           "page_at_cut": ("valley_page", "mean"), "depth": ("depth", "mean")}
    if "ln_rank_bound" in table.columns:
        agg["ln_rank_bound"] = ("ln_rank_bound", "max")
    if "valley_neighbour_depth" in table.columns:  # the valley's shape (entanglement_summary columns)
        agg.update(depth_below_neighbours=("valley_neighbour_depth", "mean"), width=("valley_width", "mean"),
                   outer_page_ratio=("page_ratio_outer", "mean"))
    summary = table.groupby(["run", "checkpoint", "source", "role"], sort=False, dropna=False).agg(**agg).reset_index()
    section.tables.append(TableBlock.from_frame(
        "Valley at the row|column cut (means over layers, nats)", summary,
        "depth = Page's value − entropy at the cut; depth_below_neighbours = mean entropy at the two neighbouring cuts − "
        "entropy at the cut; width = consecutive cuts at least half as deep below Page; outer_page_ratio = mean S/S_Page "
        "over the other cuts; the controls (source random / random_lora) show where chance sits. entropy_at_cut ≤ "
        "ln_rank_bound is an identity of the algebra (a sanity check, not a finding)"))


def build_attention(section: Section, runs: list[Run]) -> None:
    """No-hair by layer over runs; per run one head's token-cut profile with Cardy's fit at the shortest and the
    longest L, the layer × head map of c and the digit-chain profile at the longest L; verdicts, c and no-hair
    numbers per run, checkpoint and L."""
    summary = load.read_runs(runs, "attention_summary")
    if summary.empty:
        section.message = "the attention_summary table is empty for these runs"
        return
    section.chart(partial(attention_fig.no_hair_chart, summary, title="No-hair: the attention vs the weights, by layer "
                                                                     "(every checkpoint; earlier ones faint)"))
    for run in runs:
        mine = summary[summary["run"] == run.name]
        if mine.empty:
            continue
        ck = _last(mine)
        last = mine[mine["checkpoint"] == ck]
        layers = sorted(last["layer"].dropna().unique())
        if not layers:
            continue
        layer, head = int(layers[len(layers) // 2]), int(last["head"].min())
        lengths = sorted(last["seq_len"].unique())
        if run.has_table("attention_token_cuts"):
            for length in sorted({lengths[0], lengths[-1]}):  # the dashboard has every L
                where = [("layer", "==", layer), ("head", "==", head), ("seq_len", "==", int(length)),
                         ("checkpoint", "==", ck), ("block", "==", "reads_past")]
                section.detail(partial(
                    attention_fig.token_profile_chart,
                    load.read(run, "attention_token_cuts", None, where), load.read(run, "attention_token_fits", None, where),
                    title=f"Token cuts: layer {layer}, head {head}, L = {int(length)}, reads_past ({run.name})"))
            fits = load.read(run, "attention_token_fits", None, [("checkpoint", "==", ck), ("block", "==", "reads_past")])
            section.detail(partial(
                attention_fig.cardy_map_chart, fits, title=f"Layer × head: Cardy's c, reads_past, mean over L ({run.name}, {ck})"))
        profiles = load.read(run, "attention_entanglement", None,
                             [("layer", "==", layer), ("head", "==", head), ("seq_len", "==", int(lengths[-1])),
                              ("checkpoint", "==", ck)])
        section.detail(partial(
            attention_fig.digit_chain_chart, profiles, title=f"Digit chain (index digits, not tokens): layer {layer}, head {head}, L = {int(lengths[-1])} "
                            f"({run.name})"))
    table = digests.attention(summary)
    section.tables.append(TableBlock.from_frame(
        "Token-cut verdicts and no-hair per run, checkpoint and L (reads_past block; medians and means over layers and "
        "heads)", table,
        "cardy, volume, constant and neither count the (layer, head) profiles with that verdict: a law's AIC lower by "
        "more than 2 and R² ≥ 0.8, else 'neither fits'"))


def build_thresholds(section: Section, runs: list[Run]) -> None:
    """γ against √ln L in both scales, the ratio by layer, the largest logit against ln L, the extreme-value control
    and the LoRA term, over runs; the largest values per L and the growth fits beside the control's."""
    rows = load.read_runs(runs, "thresholds")
    if rows.empty:
        section.message = "the thresholds table is empty for these runs"
        return
    section.chart(partial(thresholds_fig.growth_chart, rows, title="Largest γ against √ln L (every checkpoint)"))
    section.chart(partial(thresholds_fig.ratio_chart, rows))
    section.detail(partial(thresholds_fig.growth_chart, rows, convention="as"))
    section.detail(partial(thresholds_fig.logit_chart, rows))
    section.detail(partial(thresholds_fig.control_chart, rows))
    if rows["gamma_lora"].notna().any():
        section.detail(partial(thresholds_fig.lora_term_chart, rows))
    table = digests.thresholds(rows)
    section.tables.append(TableBlock.from_frame(
        "Largest norms per run, checkpoint and L", table,
        f"threshold = √ln L; ratio in Hu et al.'s β = 1 scale, ratio_as in Alman–Song's; {thresholds_fig.ASYMPTOTIC}"))
    growth = load.read_runs(runs, "threshold_growth")
    if not growth.empty:
        cols = [c for c in ("run", "checkpoint", "layer", "lengths", "min_seq_len", "max_seq_len", "gamma_min_len",
                            "gamma_max_len", "slope", "r2", "evt_slope", "evt_r2", "logit_slope", "logit_r2")
                if c in growth.columns]
        section.tables.append(TableBlock.from_frame(
            "Growth of the largest γ with √ln L per layer, beside the extreme-value control's and the largest logit's "
            "against ln L", growth[cols], "R² is empty below three lengths, where a line fits by construction"))


def build_no_hair(section: Section, runs: list[Run]) -> None:
    """The pairs (matched on update size or not), the outside distances with their intervals beside the
    members' distances from the base, inside against outside, and the verdict counts per pair and measure."""
    from lab.present import no_hair

    rows = load.read_runs(runs, "no_hair")
    if rows.empty:
        section.message = "the no_hair table is empty for these runs"
        return
    rows = no_hair.with_verdicts(rows)
    section.chart(partial(no_hair_fig.inside_outside_chart, rows))
    for measure in ("layer_output", "rows", "token_cuts"):
        section.detail(partial(no_hair_fig.distances_chart, rows, measure))
    pairs = no_hair.pairs(rows)
    section.tables.append(TableBlock.from_frame(
        "Pairs", pairs[["run", "pair", "kinds", "update_first", "update_second", "size_ratio", "matched", "inside"]],
        f"matched: mean update sizes within {no_hair.MATCH:g}×; inside: mean over layers"))
    section.tables.append(TableBlock.from_frame(
        "Outside distances and verdicts per pair and measure", no_hair.summary(rows),
        "means over layers and lengths; closer / farther / not separated: counts of (layer, L) rows by whether the "
        "a–b interval lies below, above or across both members' intervals from the base"))


def build_msu(section: Section, runs: list[Run]) -> None:
    """Shares of the units and the effective number of units, per run (checkpoints faint); a per-role summary."""
    units = load.read_runs(runs, "msu_units")
    msu = load.read_runs(runs, "msu")
    if msu.empty:
        section.message = "the msu table is empty for these runs"
        return
    if not units.empty:
        section.chart(partial(msu_fig.shares_chart, units, title="How the update is shared among its units "
                                                                "(every checkpoint; earlier ones faint)"))
    section.chart(partial(msu_fig.effective_chart, msu))
    for run in runs:  # per run, its last checkpoint: how alike the units are, and one module's units
        mine = msu[msu["run"] == run.name]
        if mine.empty:
            continue
        ck = _last(mine)
        section.detail(partial(
            msu_fig.similarity_chart, mine[mine["checkpoint"] == ck], title=f"How alike the units are, per module ({run.name}, {ck})"))
        mine_units = units[(units["run"] == run.name) & (units["checkpoint"] == ck)] if not units.empty else units
        if not mine_units.empty:
            module = sorted(mine_units["module"].unique())[len(mine_units["module"].unique()) // 2]
            section.detail(partial(
                msu_fig.contributions_chart, mine_units[mine_units["module"] == module], title=f"Unit contributions: {module} ({run.name}, {ck})"))
    section.tables.append(TableBlock.from_frame("Units per role (means over layers)", digests.msu(msu)))
    notes = msu["note"].dropna() if "note" in msu.columns else pd.Series(dtype=str)
    if (notes != "").any():
        section.message = "; ".join(sorted(set(notes[notes != ""])))


def build_msu_pairs(section: Section, runs: list[Run]) -> None:
    """The cross-term errors per module with their spread over rank permutations, and the table's numbers."""
    pairs = load.read_runs(runs, "msu_pairs")
    if pairs.empty:
        section.message = "the msu_pairs table is empty for these runs"
        return
    section.chart(partial(msu_fig.pairs_chart, pairs))
    section.tables.append(TableBlock.from_frame("Concatenation vs averaging per module", digests.pairs(pairs),
                                                "relative Frobenius errors against the exact sum / mean of the updates"))


def build_merge(section: Section, runs: list[Run]) -> None:
    """Errors of every merged adapter against rank k, beside the Eckart–Young floor; one row per merged adapter."""
    merge = load.read_runs(runs, "merge")
    if merge.empty:
        section.message = "the merge table is empty for these runs"
        return
    section.chart(partial(msu_fig.merge_chart, merge))
    table = digests.merge(merge)
    section.tables.append(TableBlock.from_frame("Merged adapters (means over modules)", table,
                                                "checkpoint = the merged adapter's folder name"))
    evals = load.read_runs(runs, "merge_eval")
    if not evals.empty:
        section.chart(partial(msu_fig.merge_eval_chart, evals))
        section.tables.append(TableBlock.from_frame("Held-out loss per merged adapter and text set", digests.merge_eval(evals),
                                                    "loss of the merge, the base and the best input adapter on each --eval-texts set"))


def _last(rows: pd.DataFrame) -> str:
    """The last checkpoint in training order among the rows (largest step, then name)."""
    from lab.present.findings import last_checkpoint

    return last_checkpoint(rows)


def build_forgetting(section: Section, runs: list[Run]) -> None:
    """KL and loss change per run, checkpoint and text set with intervals; hidden-state distances by layer; one row
    per run, checkpoint, text set and L."""
    from lab.present import forgetting

    rows = load.read_runs(runs, "forgetting")
    if rows.empty:
        section.message = "the forgetting table is empty for these runs"
        return
    layers = load.read_runs(runs, "forgetting_layers")
    section.chart(partial(forgetting_fig.kl_chart, rows))
    section.chart(partial(forgetting_fig.layers_chart, layers))
    section.tables.append(TableBlock.from_frame(
        "KL and loss change per run, checkpoint, text set and L", forgetting.digest(rows, layers),
        "texts: the run's --texts; reference: --reference-texts (what was forgotten); _lo/_hi: bootstrap 95 % "
        "intervals over windows; most_moved_state: the hidden state (0 = embeddings) farthest from the base's"))


BUILDERS: dict[str, Callable[[Section, list[Run]], None]] = {
    "deltas": build_deltas,
    "entanglement": build_entanglement,
    "attention": build_attention,
    "thresholds": build_thresholds,
    "no_hair": build_no_hair,
    "msu": build_msu,
    "msu_pairs": build_msu_pairs,
    "merge": build_merge,
    "forgetting": build_forgetting,
}
