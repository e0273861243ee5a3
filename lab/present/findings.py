"""What fine-tuning did, in sentences with numbers, computed from the stored tables (never written by hand).

:func:`summarize` reads the runs of a results folder and returns, per probe family whose table
some run holds, a few :class:`Sentence` objects: one per run that has the table (about its last
checkpoint in training order) and, when several runs have it, one comparing them. A run without
the table gets no sentence. Each number is a :class:`Number` that knows the figure it can be read
from (the family's headline figure, ``fig-<family>``), so the HTML links it, the PDF refers to
it and the dashboard shows it beside the figure.

Definitions used below (the tests recompute each with pandas on the parquet files):

* the *last checkpoint* of a run in a table: the largest ``step`` (a checkpoint without a step
  counts as before every step), ties broken by the checkpoint name;
* *measured* rows: ``source`` absent or ``delta`` (controls and base weights left out);
* means are arithmetic over the rows (modules, heads, windows) at that checkpoint; ``±`` is the
  sample standard deviation;
* a pair of updates (adapter_similarity) is *compared* when its note is empty; its numbers are means
  over the modules both members have, and two pairs are "separated over modules" by
  :func:`lab.present.seeds.separated` on their per-module cosines;
* forgetting numbers are a run's rows at its last checkpoint and longest window length; one text set
  or run "moved more" only where the bootstrap intervals of the two are disjoint.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from lab.present import load
from lab.present.digests import merge_eval
from lab.present.families import by_key, families
from lab.present.picks import at_last, last_checkpoint, measured  # noqa: F401  (read from here by the views)
from lab.present.sentences import (  # noqa: F401  (re-exported: the names findings were always read from)
    ASYMPTOTIC_CAVEAT, FULL, FamilyFindings, Number, Sentence, Writer, against_full, anchor, configurations,
    escape_markdown, fmt, markdown, per_run, ranking, who)
from lab.store import Run

# -- one function per family ---------------------------------------------------------------------

def _deltas(runs: Sequence[Run]) -> list[Sentence]:
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


def _entanglement(runs: Sequence[Run]) -> list[Sentence]:
    from lab.present.valleys import entanglement_valleys

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


def _token_laws(w: Writer, fits: pd.DataFrame) -> None:
    """The token-cut verdicts and c of one checkpoint's attention_token_fits rows, tuned and base, as measured."""
    lengths = sorted(fits["seq_len"].dropna().astype(int).unique())
    w.text("over token cuts (L = " + ", ".join(str(n) for n in lengths) + "; "
           + " and ".join(sorted(fits["block"].dropna().unique())) + " blocks) the verdict is Cardy's chord in ")
    w.num("cardy_verdicts", int((fits["verdict"] == "cardy").sum()), "/").num("token_profiles", len(fits))
    w.text(" (layer, head, L, block) profiles, the volume law in ").num("volume_verdicts", int((fits["verdict"] == "volume").sum()))
    w.text(", a constant in ").num("constant_verdicts", int((fits["verdict"] == "constant").sum()))
    w.text(" and neither fits in ").num("neither_verdicts", int((fits["verdict"] == "neither fits").sum()))
    c = fits["cardy_c"].dropna()
    if not c.empty:
        w.text("; Cardy's c has median ").num("cardy_c_median", c.median(), " (interquartile ")
        w.num("cardy_c_q25", c.quantile(0.25), "–").num("cardy_c_q75", c.quantile(0.75))
        w.text(" over layers, heads, lengths and blocks; per-L medians ")
        by_len = fits.groupby("seq_len")["cardy_c"].median()
        w.num("cardy_c_length_min", by_len.min(), " to ").num("cardy_c_length_max", by_len.max())
        w.text(", per-layer medians ")
        by_layer = fits.groupby("layer")["cardy_c"].median()
        w.num("cardy_c_layer_min", by_layer.min(), " to ").num("cardy_c_layer_max", by_layer.max())
        w.text(") at median R² ").num("cardy_r2_median", fits["cardy_r2"].median())
        if "base_cardy_c" in fits.columns and fits["base_cardy_c"].notna().any():
            w.text("; the base on the same windows: Cardy in ")
            w.num("base_cardy_verdicts", int((fits["base_verdict"] == "cardy").sum()), "/")
            w.num("base_token_profiles", int(fits["base_verdict"].notna().sum()), ", c median ")
            w.num("base_cardy_c_median", fits["base_cardy_c"].median())
    w.text(". ")


def _attention(runs: Sequence[Run]) -> list[Sentence]:
    cols = ["run", "checkpoint", "step", "layer", "head", "seq_len", "entropy_diff", "attention_tv", "q_rel_change",
            "v_rel_change"]
    fits_of = dict(per_run(runs, "attention_token_fits"))
    out, tv = [], {}
    for run, rows in per_run(runs, "attention_summary", cols):
        ck, rows = at_last(rows)
        if rows.empty:
            continue
        w = Writer("attention", run)
        who(w, run, ck, rows)
        fits = fits_of.get(run)
        fits = fits[fits["checkpoint"].astype(str) == ck] if fits is not None else None
        if fits is not None and not fits.empty:
            _token_laws(w, fits)
        w.text("No-hair: attention rows moved by ").num("attention_tv_mean", rows["attention_tv"].mean())
        w.text(" (mean total variation), the digit-chain profile by ").num("entropy_diff_mean", rows["entropy_diff"].mean())
        w.text(" (mean relative difference)")
        inside = rows[["q_rel_change", "v_rel_change"]].stack().dropna() if {"q_rel_change", "v_rel_change"} <= set(rows.columns) else []
        if len(inside):
            w.text(", while inside the weights ‖ΔW‖_F/‖W‖_F of q and v is ").num("rel_change_mean", float(np.mean(inside)), " (mean)")
        w.text(".")
        tv[run] = float(rows["attention_tv"].mean())
        out.append(w.sentence)
    if len(tv) > 1:
        w = Writer("attention", None)
        ranking(w, "Attention moved most (mean total variation from the base)", tv, "attention_tv_mean")
        out.append(w.sentence)
    return out


def _no_hair(runs: Sequence[Run]) -> list[Sentence]:
    """Per run, each pair (matched pairs first): the inside distance, the layer-output and row distances
    beside the members' distances from the base, and the verdicts where intervals separate."""
    from lab.present import no_hair

    out = []
    for run, rows in per_run(runs, "no_hair"):
        rows = no_hair.with_verdicts(rows)
        pairs = no_hair.pairs(rows).sort_values(["matched", "size_ratio"], ascending=[False, True])
        w = Writer("no_hair", run)
        w.text(f"{run}: ")
        for i, p in enumerate(pairs.itertuples()):
            tag = f"matched on update size, {fmt(p.size_ratio)}×" if p.matched else f"unmatched, sizes {fmt(p.size_ratio)}× apart"
            w.text(("" if i == 0 else " ") + f"{p.pair} ({p.kinds}, {tag}): inside ").num(f"inside[{p.pair}]", p.inside)
            for measure, label in (("layer_output", "layer output"), ("rows", "attention rows")):
                r = rows[(rows["pair"] == p.pair) & (rows["measure"] == measure)]
                if r.empty:
                    continue
                w.text(f"; {label} a–b ").num(f"{measure}[{p.pair}]", r["distance"].mean(), " (a–base ")
                w.num(f"{measure}_first_base[{p.pair}]", r["first_base"].mean(), ", b–base ")
                w.num(f"{measure}_second_base[{p.pair}]", r["second_base"].mean(), "), ")
                w.text(no_hair.pair_verdict(r))
            w.text(".")
        out.append(w.sentence)
    return out


def _thresholds(runs: Sequence[Run]) -> list[Sentence]:
    cols = ["run", "checkpoint", "step", "layer", "head", "seq_len", "window", "gamma_q", "gamma_k", "gamma_lora", "ratio",
            "ratio_as", "logit_max", "evt_ratio_q", "evt_ratio_k"]
    growth = {name: rows for name, rows in per_run(runs, "threshold_growth")}
    out, ratios = [], {}
    for run, rows in per_run(runs, "thresholds", cols):
        ck, rows = at_last(rows)
        rows = rows[rows["ratio"].notna()]
        if rows.empty:
            continue
        w = Writer("thresholds", run)
        who(w, run, ck, rows)
        top = rows.loc[rows["ratio"].idxmax()]
        w.text("max(γ_q, γ_k) reaches ").num("ratio_max", top["ratio"], "·√ln L in Hu et al.'s literal β = 1 scale")
        if "ratio_as" in rows.columns and rows["ratio_as"].notna().any():
            w.text(", ").num("ratio_as_max", rows["ratio_as"].max(), "·√ln L in Alman–Song's (√d_head larger)")
        w.text(" (at L = ").num("ratio_max_seq_len", top["seq_len"], ", layer ").num("ratio_max_layer", top["layer"], ", head ")
        w.num("ratio_max_head", top["head"], "); median ratio ").num("ratio_median", rows["ratio"].median())
        if "logit_max" in rows.columns and rows["logit_max"].notna().any():
            at = rows.loc[rows["logit_max"].idxmax()]
            w.text("; the largest logit |q·k|/√d_head over attended pairs is ").num("logit_max", at["logit_max"], " at L = ")
            w.num("logit_max_seq_len", at["seq_len"], " (ln L = ").num("logit_max_ln_L", math.log(at["seq_len"]), ")")
        lora = rows["gamma_lora"].dropna()
        if not lora.empty:
            w.text("; the LoRA term alone reaches γ = ").num("gamma_lora_max", lora.max())
        if {"evt_ratio_q", "evt_ratio_k"} <= set(rows.columns) and rows["evt_ratio_q"].notna().any():
            w.text("; γ/control, the largest entry over the extreme-value control σ·√(2 ln(L·d_head)), has median ")
            w.num("evt_ratio_median", np.nanmedian(rows[["evt_ratio_q", "evt_ratio_k"]].to_numpy()))
        g = growth.get(run)
        if g is not None:
            g = g[g["checkpoint"].astype(str) == ck]
        if g is not None and not g.empty:
            lengths = int(g["lengths"].max())
            # below three lengths a line fits by construction (threshold_growth's R² is NaN there): no growth claimed
            fitted = g[g["slope"].notna()] if lengths >= 3 and "evt_slope" in g.columns else g.iloc[0:0]
            if not fitted.empty:
                w.text("; over ").num("growth_lengths", lengths, " lengths the largest γ grows by ")
                w.num("slope_median", fitted["slope"].median(), " per unit of √ln L and the control by ")
                w.num("evt_slope_median", fitted["evt_slope"].median(), " (medians over ")
                w.num("growth_layers", len(fitted), " layers; the measured slope is the larger in ")
                w.num("slope_above_control", int((fitted["slope"] > fitted["evt_slope"]).sum()), " of them)")
                if fitted["logit_slope"].notna().any():
                    w.text(", the largest logit by ").num("logit_slope_median", fitted["logit_slope"].median(),
                                                          " per unit of ln L")
            else:
                w.text("; growth with L is not fitted: ").num("growth_lengths", lengths,
                                                              " length(s) measured, at least 3 needed")
        w.text(". " + ASYMPTOTIC_CAVEAT)
        ratios[run] = float(top["ratio"])
        out.append(w.sentence)
    if len(ratios) > 1:
        w = Writer("thresholds", None)
        ranking(w, "Highest max(γ_q, γ_k)/√ln L (Hu's β = 1 scale)", ratios, "ratio_max")
        out.append(w.sentence)
    return out


def _msu(runs: Sequence[Run]) -> list[Sentence]:
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


def _msu_pairs(runs: Sequence[Run]) -> list[Sentence]:
    out = []
    for run, rows in per_run(runs, "msu_pairs"):
        w = Writer("msu_pairs", run)
        members = ", ".join(sorted(rows["members"].dropna().astype(str).unique()))
        w.text(f"{run} ({members}): concatenating the adapters' units equals summing their updates to ")
        w.num("concat_sum_error_max", rows["concat_sum_error"].max(), " (largest relative error over ")
        w.num("modules", len(rows), " modules)")
        linear = rows.dropna(subset=["cross_term_error"])
        if not linear.empty:
            w.text("; index-wise averaging (PEFT's linear) misses the exact mean by ").num("cross_term_error_mean", linear["cross_term_error"].mean())
            w.text(" (mean relative error), from ").num("cross_term_error_min", linear["cross_term_error_min"].min())
            w.text(" to ").num("cross_term_error_max", linear["cross_term_error_max"].max(), " over rank permutations")
            w.text("; FedAvg's mean of factors by ").num("fedavg_error_mean", linear["fedavg_error"].mean())
        skipped = len(rows) - len(linear)
        if skipped:
            w.text("; ").num("heterogeneous", skipped, " modules have different ranks (no index-wise average)")
        w.text(".")
        out.append(w.sentence)
    return out


def _merge(runs: Sequence[Run]) -> list[Sentence]:
    out = []
    for run, rows in per_run(runs, "merge"):
        w = Writer("merge", run)
        w.text(f"{run}: relative error against the exact weighted sum, mean over modules: ")
        by = rows.groupby(["method", "checkpoint"], sort=True).agg(k=("k", "max"), error=("rel_fro_error", "mean"),
                                                                    optimal=("optimal_rel_fro_error", "mean"))
        for i, ((method, merged), r) in enumerate(by.sort_values("error").iterrows()):
            named = f"{method} ({merged}, k = " if merged != method else f"{method} (k = "
            w.text(("" if i == 0 else "; ") + named).num(f"k[{merged}]", r["k"], ") ")
            w.num(f"rel_fro_error[{merged}]", r["error"], " (best rank-k ").num(f"optimal_rel_fro_error[{merged}]", r["optimal"], ")")
        w.text(".")
        out.append(w.sentence)
    for run, rows in per_run(runs, "merge_eval"):
        for texts, g in merge_eval(rows).groupby("texts", sort=True):
            w = Writer("merge", run)
            w.text(f"{run}, held-out loss on {texts} ({g['objective'].iloc[0]}): base ").num(f"base_loss[{texts}]", g["base_loss"].iloc[0])
            best = g.dropna(subset=["best_input_loss"])
            if not best.empty:
                top = best.loc[best["best_input_loss"].idxmin()]
                w.text(f", best input adapter {top['best_input']} ").num(f"best_input_loss[{texts}]", top["best_input_loss"])
            for i, r in enumerate(g.sort_values("loss").itertuples()):
                w.text("; " if i else "; merges: ").text(f"{r.method} ({r.merged}) ").num(f"loss[{r.merged}][{texts}]", r.loss)
            w.text(" (one merge run, no seeds: differences here are measurements, not verdicts).")
            out.append(w.sentence)
    return out


def _forgetting_at(rows: pd.DataFrame) -> tuple[str | None, pd.DataFrame]:
    """(last checkpoint, its rows at the run's longest window length), one row per text set."""
    ck, rows = at_last(rows)
    if rows.empty:
        return ck, rows
    return ck, rows[rows["seq_len"] == rows["seq_len"].max()]


def _interval(w: Writer, name: str, r, column: str) -> None:
    w.num(name, r[column], " [").num(f"{name}_lo", r[f"{column}_lo"], ", ").num(f"{name}_hi", r[f"{column}_hi"], "]")


def _apart(a, b, column: str) -> int:
    """+1 when a's interval lies above b's, −1 below, 0 when they overlap."""
    if a[f"{column}_lo"] > b[f"{column}_hi"]:
        return 1
    if a[f"{column}_hi"] < b[f"{column}_lo"]:
        return -1
    return 0


def _forgetting(runs: Sequence[Run]) -> list[Sentence]:
    """Per run at its last checkpoint and longest L: KL and loss change on --texts and on the reference texts with
    their intervals (which is larger only where the intervals separate), and where the hidden states moved most;
    with several runs, the reference-text KL beside the update's size and the intruder count."""
    layers_of = dict(per_run(runs, "forgetting_layers"))
    out, side = [], {}
    for run_obj in runs:
        if not run_obj.has_table("forgetting"):
            continue
        run = run_obj.name
        ck, rows = _forgetting_at(load.read(run_obj, "forgetting"))
        if rows.empty:
            continue
        by_set = {r["text_set"]: r for _, r in rows.iterrows()}
        w = Writer("forgetting", run)
        who(w, run, ck, rows)
        w.text("L = ").num("seq_len", rows["seq_len"].iloc[0], ", ").num("windows", rows["windows"].iloc[0], " windows; ")
        if (rows["objective"] == "none").all():
            w.text("no language-modelling head, so no KL or loss (hidden states only)")
        else:
            for i, (text_set, label) in enumerate((("texts", "on --texts"), ("reference", "on the reference texts"))):
                r = by_set.get(text_set)
                if r is None:
                    continue
                w.text(("" if i == 0 else "; ") + f"{label} KL(p_base ‖ p_tuned) ")
                _interval(w, f"kl_{text_set}", r, "kl")
                w.text(" nats, loss change ")
                _interval(w, f"loss_change_{text_set}", r, "loss_change")
            if {"texts", "reference"} <= set(by_set):
                sign = _apart(by_set["reference"], by_set["texts"], "kl")
                w.text({1: "; KL larger on the reference texts (intervals separate)",
                        -1: "; KL larger on --texts (intervals separate)",
                        0: "; KL on the two text sets not separated (intervals overlap)"}[sign])
            else:
                w.text(" (no reference texts: run with --reference-texts to see what was forgotten)")
        layers = layers_of.get(run)
        if layers is not None:
            mine = layers[(layers["checkpoint"].astype(str) == ck) & (layers["seq_len"] == rows["seq_len"].iloc[0])]
            text_set = "reference" if (mine["text_set"] == "reference").any() else "texts"
            mine = mine[(mine["text_set"] == text_set) & mine["cosine_distance"].notna()]
            if not mine.empty:
                top = mine.sort_values(["cosine_distance", "hidden_state"], ascending=[False, True]).iloc[0]
                w.text(f"; hidden states ({'reference texts' if text_set == 'reference' else '--texts'}) moved most at hidden state ")
                w.num("hidden_state_max", top["hidden_state"], ", 1 − cos = ").num("cosine_distance_max", top["cosine_distance"])
        w.text(".")
        out.append(w.sentence)
        kl_row = by_set.get("reference", by_set.get("texts"))
        if kl_row is not None and pd.notna(kl_row["kl"]):
            side[run] = (run_obj, ck, kl_row)
    if len(side) > 1:
        out.append(_learns_less_forgets_less(side, load.run_methods(runs)))
    return out


def _learns_less_forgets_less(side: dict, methods: dict[str, str]) -> Sentence:
    """The runs ordered by update size (mean ‖ΔW‖_F at the checkpoint of their forgetting rows) beside their KL on
    the reference texts (else --texts) and their intruder count; an order stated only where the KL intervals of
    neighbours in size separate; with a full fine-tune among them, each method's runs against full fine-tuning's by
    the seeds rule (:func:`_against_full`)."""
    from lab.present import intruders as intr

    w = Writer("forgetting", None)
    sizes, counts = {}, {}
    for run, (run_obj, ck, _) in side.items():
        d = load.read(run_obj, "deltas", ["checkpoint", "source", "fro_norm"], [("checkpoint", "==", ck)])
        sizes[run] = float(measured(d)["fro_norm"].mean()) if not d.empty else float("nan")
        if run_obj.has_table("intruders"):
            rows = load.read(run_obj, "intruders", None, [("checkpoint", "==", ck)])
            if not rows.empty:
                eps, k = intr.setting(rows)
                counts[run] = (float(intr.at(rows, eps, k)["intruder_count"].sum()), eps, k)
    order = sorted(side, key=lambda r: (sizes[r], r))
    sets = {side[r][2]["text_set"] for r in order}
    w.text("Update size beside forgetting (last checkpoints, KL on the " + ("reference texts" if sets == {"reference"}
                                                                           else "/".join(sorted(sets)) + " texts") + "): ")
    for i, run in enumerate(order):
        w.text(("" if i == 0 else "; ") + f"{run}: mean ‖ΔW‖_F ").num(f"fro_norm[{run}]", sizes[run], ", KL ")
        r = side[run][2]
        w.num(f"kl[{run}]", r["kl"], " [").num(f"kl_lo[{run}]", r["kl_lo"], ", ").num(f"kl_hi[{run}]", r["kl_hi"], "]")
        if run in counts:
            n, eps, k = counts[run]
            w.text(", ").num(f"intruders[{run}]", n, f" intruders (ε = {eps:g}, k = {k}, left)")
    signs = [_apart(side[b][2], side[a][2], "kl") for a, b in zip(order, order[1:])]
    if sets != {"reference"} and len(sets) > 1:
        w.text(". The KL is on different text sets across runs: no order stated.")
    elif all(s == 1 for s in signs):
        w.text(". The larger the update, the larger the KL (each neighbour's interval separates): learns more, forgets more.")
    elif all(s == -1 for s in signs):
        w.text(". The larger the update, the smaller the KL (each neighbour's interval separates).")
    else:
        w.text(". KL against update size: not separated (neighbouring intervals overlap or the order is mixed).")
    w.text(" Mean ‖ΔW‖_F is over each run's own modules, so runs that analysed different modules compare only roughly.")
    kinds = {methods.get(run) or "unknown" for run in order}
    if sets == {"reference"} and FULL in kinds and len(kinds) > 1:
        w.text(" KL on the reference texts by method, the runs of a method as its seeds:")
        against_full(w, {run: float(side[run][2]["kl"]) for run in order}, methods)
    return w.sentence


SUMMARIES: dict[str, Callable[[Sequence[Run]], list[Sentence]]] = {
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


def summarize(runs: Sequence[Run]) -> list[FamilyFindings]:
    """The findings of every family some run computed, in the families' reading order."""
    found = [summarize_family(family.key, runs) for family in families()]
    return [f for f in found if f is not None]


def summarize_family(key: str, runs: Sequence[Run]) -> FamilyFindings | None:
    """The findings of one family, or None when no run computed it or it has nothing to say."""
    family = by_key(key)
    summary = family.findings or SUMMARIES.get(key)
    if summary is None or not load.computed(runs, family.tables[0]):
        return None
    sentences = summary(runs)
    return FamilyFindings(key, family.title, anchor(key), sentences) if sentences else None
