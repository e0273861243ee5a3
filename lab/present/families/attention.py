"""The external entanglement (attention) family (attention_summary, attention_token_fits, attention_token_cuts, attention_entanglement, windows): its theory, findings, headline figure and section."""

from __future__ import annotations

from functools import partial
from typing import Sequence

import numpy as np
import pandas as pd

from lab.present import digests
from lab.present.figures import attention as figures
from lab.present.figures.common import Chart
from lab.present.frames import distinct
from lab.present.family import Family
from lab.present.page import Page
from lab.present.picks import at_last, last_checkpoint, last_rows_of
from lab.present.sentences import Sentence, Writer, per_run, ranking, who
from lab.store import Run

THEORY = (
    'The base and each checkpoint run with eager attention on the same token windows of exactly L tokens. For each '
    "head's L×L attention matrix P and each cut after ℓ tokens, the cross block P[ℓ:, :ℓ] (queries after the cut "
    'reading keys before it; for encoders also P[:ℓ, ℓ:]) gets the entropy S(ℓ) of its normalised squared singular '
    "values: the 'token–token correlations' that arXiv 2601.06788 reports to follow 'an area law with logarithmic "
    "corrections' (its 'Attention Cardy Formula'). Over ℓ in tokens three laws are fitted to the windows' mean "
    "profile: Cardy's chord S = a + (c/3)·ln((L/π)·sin(πℓ/L)), a volume law S = a + b·min(ℓ, L−ℓ) and a constant; a"
    " law is the verdict only with an AIC lower by more than 2 and R² ≥ 0.8, else 'neither fits'. The digit-chain "
    'profile (the internal probe applied to P: cuts split index digits, not tokens) is kept beside it, unfitted. '
    "The 'no-hair' claim (LoRA and full fine-tuning differ inside ΔW, not in the attention) is one comparison: how "
    "far the tuned attention moved from the base's (total variation of rows, relative entropy difference) beside "
    "how far the layer's W_q and W_v moved (‖ΔW‖_F/‖W‖_F)."
)


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


def findings(runs: Sequence[Run]) -> list[Sentence]:
    """Per run, at its last checkpoint: the token-cut verdicts and Cardy's c (tuned and base), then how far the
    attention moved (no-hair) beside how far W_q and W_v moved; across runs, the ranking by attention movement."""
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


def headline(runs: Sequence[Run]) -> Chart:
    """One head's token-cut profile (middle layer, first head, longest L, reads_past) with Cardy's fit per run at its
    last checkpoint, beside how far the attention moved by layer."""
    with_table = [r for r in runs if r.has_table("attention_summary")]
    summary = last_rows_of(with_table, "attention_summary")
    if summary.empty:
        return figures.headline_chart(pd.DataFrame(), pd.DataFrame(), summary)
    layers = sorted(summary["layer"].dropna().unique())
    if not layers:
        return figures.headline_chart(pd.DataFrame(), pd.DataFrame(), summary)
    layer, head, length = int(layers[len(layers) // 2]), int(summary["head"].min()), int(summary["seq_len"].max())
    where = [("layer", "==", layer), ("head", "==", head), ("seq_len", "==", length), ("block", "==", "reads_past")]
    cuts = last_rows_of(with_table, "attention_token_cuts", None, where)
    fits = last_rows_of(with_table, "attention_token_fits", None, where)
    return figures.headline_chart(cuts, fits, summary,
                                  title="Attention: the token-cut profile with Cardy's fit, and how far it moved")


EVERY = "every checkpoint"  # a run's checkpoint choice: its figures overlay every checkpoint (earlier ones faint)


def _run_figures(page: Page, run: Run, mine: pd.DataFrame, block: str, measure: str) -> None:
    """One run's figures at its last checkpoint unless the reader chooses: one head's token-cut profiles with Cardy's
    fit (middle layer, first head, shortest and longest L), the layer × head map of c, the digit-chain profile at the
    longest L, and the layer × head map of a no-hair measure."""
    ck = last_checkpoint(mine)
    last = mine[mine["checkpoint"] == ck]
    layers = sorted(last["layer"].dropna().unique())
    if not layers:
        return
    which = page.choose(f"Checkpoint of {run.name}", [EVERY] + distinct(mine, "checkpoint"), ck)
    layer = int(page.choose(f"Layer of {run.name}", layers, layers[len(layers) // 2]))
    head = int(page.choose(f"Head of {run.name}", sorted(last["head"].unique()), last["head"].min()))
    lengths = sorted(last["seq_len"].unique())
    chosen = sorted(int(n) for n in page.choose_many(f"Window lengths L of {run.name}", lengths,
                                                      sorted({lengths[0], lengths[-1]})))
    at = [] if which == EVERY else [("checkpoint", "==", which)]
    shown = ck if which == EVERY else which  # the maps show one checkpoint: the last when every one is overlaid
    if page.computed("attention_token_cuts", [run]):
        for length in chosen:  # the report: the shortest and the longest L
            where = [("layer", "==", layer), ("head", "==", head), ("seq_len", "==", length)] + at + [
                ("block", "==", block)]
            page.figure(partial(
                figures.token_profile_chart,
                page.read("attention_token_cuts", None, where, runs=[run], role=False),
                page.read("attention_token_fits", None, where, runs=[run], role=False),
                title=f"Token cuts: layer {layer}, head {head}, L = {length}, {block} ({run.name})"), detail=True)
        fits = page.read("attention_token_fits", None, [("checkpoint", "==", shown), ("block", "==", block)],
                         runs=[run], role=False)
        page.figure(partial(
            figures.cardy_map_chart, fits, title=f"Layer × head: Cardy's c, {block}, mean over L ({run.name}, {shown})"),
            detail=True)
    if chosen:
        profiles = page.read("attention_entanglement", None,
                             [("layer", "==", layer), ("head", "==", head), ("seq_len", "==", chosen[-1])] + at,
                             runs=[run], role=False)
        page.figure(partial(
            figures.digit_chain_chart, profiles, title=f"Digit chain (index digits, not tokens): layer {layer}, head "
                                                       f"{head}, L = {chosen[-1]} ({run.name})"), detail=True)
    page.figure(partial(figures.head_map_chart, mine[mine["checkpoint"] == shown], measure,
                        title=f"Layer × head: {measure} ({run.name}, {shown})"), detail=True)


def section(page: Page) -> None:
    """No-hair by layer over runs; per run one head's token-cut profiles with Cardy's fit, the layer × head map of c,
    the digit-chain profile and a layer × head map of a no-hair measure (:func:`_run_figures`); verdicts, c and no-hair
    numbers per run, checkpoint and L; the rows."""
    summary = page.read("attention_summary", role=False)  # attention rows have no module role
    if summary.empty:
        page.message("No attention rows in these runs (or in this selection: widen the filters in the sidebar).")
        return
    page.heading("No-hair: the attention beside the weights")
    page.figure(partial(figures.no_hair_chart, summary, title="No-hair: the attention vs the weights, by layer "
                                                              "(every checkpoint; earlier ones faint)"))

    page.heading("Per run: one head's token cuts with Cardy's chord fit, the digit chain beside them, layer × head maps")
    has_cuts = page.computed("attention_token_fits")
    if not has_cuts:
        page.message("These runs have no token-cut tables (measured before they existed): rerun the attention probe.")
    all_fits = page.read("attention_token_fits", role=False) if has_cuts else pd.DataFrame()
    blocks = distinct(all_fits, "block") if not all_fits.empty else ["reads_past"]
    block = page.choose("Block", blocks, "reads_past" if "reads_past" in blocks else blocks[0],
                        help="reads_past: P[ℓ:, :ℓ]; reads_future: P[:ℓ, ℓ:] (encoders only)")
    measures = [c for c in ("entropy_diff", "attention_tv", "token_cardy_c", "token_cardy_r2") if c in summary.columns]
    measure = page.choose("Measure in the layer × head map", measures, measures[0], horizontal=True)
    for run in page.runs:
        mine = summary[summary["run"] == run.name]
        if not mine.empty:
            _run_figures(page, run, mine, block, measure)

    page.table(
        "Token-cut verdicts and no-hair per run, checkpoint and L (reads_past block; medians and means over layers and "
        "heads)", digests.attention(summary),
        "cardy, volume, constant and neither count the (layer, head) profiles with that verdict: a law's AIC lower by "
        "more than 2 and R² ≥ 0.8, else 'neither fits'")
    if has_cuts:
        page.table("attention_token_fits rows", all_fits, reference=True)
    page.table("attention_summary rows", summary, reference=True)
    if page.computed("windows"):
        page.table("The token windows", page.read("windows", None, [("probe", "==", "attention")], checkpoint=False,
                                                  role=False, step=False, layer=False), reference=True)


FAMILY = Family(
    'attention', 'External entanglement (attention)', ('attention_summary', 'attention_token_fits', 'attention_token_cuts', 'attention_entanglement', 'windows'), THEORY,
    icon=':material/visibility:',
    hint='Run `lab analyze ... --base BASE --probes attention` to add it (needs a tokenizer).',
    findings=findings, headline=headline, section=section, cost=4,
)
