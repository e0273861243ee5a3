"""The lora norm thresholds family (thresholds, threshold_growth, windows): its theory, findings, headline figure and section."""

from __future__ import annotations

import math
from functools import partial
from typing import Sequence

import numpy as np
import pandas as pd

from lab.present import digests
from lab.present.figures import thresholds as figures
from lab.present.figures.common import Chart
from lab.present.family import Family
from lab.present.page import Page
from lab.present.picks import at_last, last_rows_of
from lab.present.sentences import Sentence, Writer, per_run, ranking, who
from lab.store import Run
from lab.store.schema import ASYMPTOTIC_CAVEAT

THEORY = (
    "Hu et al., 'Computational Limits of Low-Rank Adaptation' (arXiv 2406.03136): with X the input of an attention "
    "layer, LoRA's gradient admits almost-linear-time algorithms when ‖X·W_Q,eff‖_∞ and ‖X·W_K‖_∞ are o(√ln L), and"
    ' no sub-quadratic one above Θ(√ln L) (under SETH). Hu et al. write softmax(Q·Kᵀ·β) with β = 1; the bound they '
    "borrow is Alman & Song's (arXiv 2302.13214), exp(Q·Kᵀ/d) with entries of Q, K in [−B, B] and a sharp "
    "transition at B = Θ(√log n). A head computing q·kᵀ/√d_head is Hu's literal form with d_head^(−1/4)·q (γ_q, "
    "γ_k, ratio) and Alman–Song's with d_head^(+1/4)·q (γ_q_as, γ_k_as, ratio_as): the scales differ by √d_head. "
    "A model with another logit scale s (Gemma: query_pre_attn_scalar^(−1/2)) has √s·q and √(s·d_head)·q instead, "
    "and where it normalises q and k before the softmax (Qwen3, Gemma 3, OLMo 2) q and k are the norms' outputs; "
    "logits are the model's own, soft-capped (Gemma 2) and over the pairs a sliding window attends. "
    'Measured per layer, head, L and window on real inputs, with the LoRA term alone and the split-free largest '
    'logit |q_i·k_j|/√d_head over attended pairs against ln L (B² when B = √ln L). The maximum of L·d_head Gaussian'
    ' entries of spread σ grows like σ·√(2 ln(L·d_head)) in any regime, so each γ is read beside that extreme-value'
    " control, and per layer the growth of the largest γ with √ln L beside the control's (R² from three lengths). "
    + ASYMPTOTIC_CAVEAT
)


def findings(runs: Sequence[Run]) -> list[Sentence]:
    """Per run, at its last checkpoint: the largest γ/√ln L in both scales and where, the largest logit, the LoRA
    term, γ over its extreme-value control and the growth with √ln L beside the control's, each with the asymptotic
    caveat; across runs, the ranking by the largest ratio."""
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


def headline(runs: Sequence[Run]) -> Chart:
    """The largest γ against √ln L, every run at its last checkpoint."""
    return figures.growth_chart(last_rows_of(runs, "thresholds"),
                                title="Largest γ against √ln L (last checkpoint of each run)")


GROWTH_COLUMNS = ("run", "checkpoint", "layer", "lengths", "min_seq_len", "max_seq_len", "gamma_min_len", "gamma_max_len",
                  "slope", "r2", "evt_slope", "evt_r2", "logit_slope", "logit_r2")


def section(page: Page) -> None:
    """γ against √ln L and the ratio by layer in both scales, the largest logit against ln L, the extreme-value control
    and the LoRA term, over runs; the largest values per run, checkpoint and L and the growth fits beside the
    control's; the rows."""
    rows = page.read("thresholds", role=False)  # threshold rows have no module role
    if rows.empty:
        page.message("No thresholds rows in these runs (or in this selection: widen the filters in the sidebar).")
        return
    page.heading("Growth with the window length: Hu et al.'s β = 1 scale, then Alman–Song's (√d_head larger)")
    page.figure(partial(figures.growth_chart, rows, title="Largest γ against √ln L (every checkpoint)"))
    page.figure(partial(figures.ratio_chart, rows))
    page.figure(partial(figures.growth_chart, rows, convention="as"), detail=True)
    page.figure(partial(figures.ratio_chart, rows, convention="as"), detail=True)
    page.heading("The largest logit against ln L")
    page.figure(partial(figures.logit_chart, rows), detail=True)
    page.heading("The extreme-value control")
    page.figure(partial(figures.control_chart, rows), detail=True)
    if rows["gamma_lora"].notna().any():
        page.figure(partial(figures.lora_term_chart, rows), detail=True)

    page.heading("Per run, checkpoint and L")
    page.table("Largest norms per run, checkpoint and L", digests.thresholds(rows),
               f"threshold = √ln L; ratio in Hu et al.'s β = 1 scale, ratio_as in Alman–Song's. {ASYMPTOTIC_CAVEAT}")
    growth = page.read("threshold_growth", role=False) if page.computed("threshold_growth") else pd.DataFrame()
    if not growth.empty:
        page.table("Growth of the largest γ with √ln L per layer, beside the extreme-value control's and the largest "
                   "logit's against ln L", growth[[c for c in GROWTH_COLUMNS if c in growth.columns]],
                   "R² is empty below three lengths, where a line fits by construction")
        page.table("threshold_growth rows", growth, reference=True)
    page.table("thresholds rows", rows, reference=True)


FAMILY = Family(
    'thresholds', 'LoRA norm thresholds', ('thresholds', 'threshold_growth', 'windows'), THEORY,
    icon=':material/speed:',
    hint='Run `lab analyze ... --probes thresholds` to add it (needs a tokenizer).',
    findings=findings, headline=headline, section=section, cost=3,
)
