"""Figures of the thresholds probe (Hu et al., arXiv 2406.03136; Alman & Song, arXiv 2302.13214): the
largest γ against √ln L in either scale (Hu's literal β = 1 form or Alman–Song's, √d_head larger), the
ratio to √ln L by layer, the largest logit |q·k|/√d_head against ln L, the extreme-value control
σ·√(2 ln(L·d_head)) beside the measured maxima, and the LoRA term beside the whole query projection.

Every figure prints the thresholds' caveat (the schema's ``ASYMPTOTIC_CAVEAT``: the bound is asymptotic,
its constants unknown) above its axes: the lines √ln L and ln L are scales to read the measurements
against, not boundaries they cross.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from lab.present.figures.common import (
    LINE_STYLES, THEORY, Chart, by_run, checkpoints_in_order, empty_chart, grouped_lines, integer_ticks, legend, new_figure,
    run_legend, run_line,
)
from lab.store.schema import ASYMPTOTIC_CAVEAT


def _wrapped(text: str, width: int, keep: tuple[str, ...] = ("√ln L", "not a verdict")) -> list[str]:
    """``text`` in lines of at most ``width`` characters, no line break inside a phrase of ``keep``."""
    for phrase in keep:
        text = text.replace(phrase, phrase.replace(" ", "\u00a0"))
    return [line.replace("\u00a0", " ") for line in textwrap.wrap(text, width)]


CAVEAT_LINES = _wrapped(ASYMPTOTIC_CAVEAT, 100)
TITLE_PAD = 6 + 8 * len(CAVEAT_LINES)  # points: a title above the caveat's lines


def _caveat(ax) -> None:
    """The thresholds' caveat in small print between the axes and their title (the title's pad is TITLE_PAD), where
    it hides no measurement."""
    ax.text(0.0, 1.01, "\n".join(CAVEAT_LINES), transform=ax.transAxes, ha="left", va="bottom", fontsize=6,
            color=THEORY["rank"], style="italic")


# The two scales of γ: Hu et al.'s literal softmax(Q·Kᵀ·β), β = 1 (the 1/√d_head split as d_head^(−1/4) on each
# of q and k), and Alman & Song's exp(Q·Kᵀ/d) (d_head^(+1/4) on each).
CONVENTIONS = {
    "hu": (("gamma_q", "gamma_k"), "ratio", "γ, Hu et al.'s β = 1 scale (d_head^(−1/4)·max |q|)"),
    "as": (("gamma_q_as", "gamma_k_as"), "ratio_as", "γ, Alman–Song's scale (d_head^(+1/4)·max |q|)"),
}


def _gamma(rows: pd.DataFrame, convention: str = "hu") -> pd.Series:
    return rows[list(CONVENTIONS[convention][0])].max(axis=1)


def _has(rows: pd.DataFrame, *columns: str) -> bool:
    return all(c in rows.columns for c in columns) and not rows.empty and rows[list(columns)].notna().any().all()


def _growth_panel(ax, thresholds: pd.DataFrame, convention: str = "hu") -> None:
    rows = thresholds.assign(gamma=_gamma(thresholds, convention),
                             sqrt_ln_l=np.sqrt(np.log(thresholds["seq_len"].astype(float))))
    layers = sorted(rows["layer"].dropna().unique())
    styles = {int(layer): LINE_STYLES[i % len(LINE_STYLES)] for i, layer in enumerate(layers)}
    runs, faint = grouped_lines(ax, rows, x="sqrt_ln_l", y="gamma", by="layer", agg="max",
                                style=lambda layer: styles.get(int(layer), "-"), label=lambda layer: f"layer {int(layer)}")
    x = np.sort(rows["sqrt_ln_l"].unique())
    x = np.linspace(x.min() * 0.95, x.max() * 1.05, 20) if len(x) else x
    ax.plot(x, x, color=THEORY["rank"], ls="--", lw=1.2, label="γ = √ln L, the theorem's scale (asymptotic)")
    run_legend(ax, runs, faint=faint, styles={f"{int(k)}": v for k, v in styles.items()}, style_name="layer")
    ax.set_xlabel("√ln L (window length L)")
    ax.set_ylabel("largest max(γ_q, γ_k): " + CONVENTIONS[convention][2].split(", ")[1])
    _caveat(ax)


def growth_chart(thresholds: pd.DataFrame, *, convention: str = "hu", title: str | None = None) -> Chart:
    """Per run, checkpoint and layer: the largest max(γ_q, γ_k) at each measured L against √ln L, with γ = √ln L,
    in Hu et al.'s literal β = 1 scale (``convention="hu"``) or Alman–Song's (``"as"``, √d_head larger)."""
    title = title or ("Largest γ against √ln L" + ("" if convention == "hu" else " (Alman–Song's scale)"))
    if not _has(thresholds, *CONVENTIONS[convention][0]):
        return empty_chart(title, "no thresholds rows for this selection")
    fig, (ax,) = new_figure()
    _growth_panel(ax, thresholds, convention)
    ax.set_title(title, fontsize=10, pad=TITLE_PAD)  # above the caveat
    legend(fig)
    scale = ("Hu et al.'s literal β = 1 form, the 1/√d_head split as d_head^(−1/4) on q and on k" if convention == "hu"
             else "Alman–Song's exp(Q·Kᵀ/d) form, d_head^(+1/4) on q and on k: √d_head times Hu's")
    caption = ("How the query/key norms grow with the window length, which is what the theorem is about: the LoRA "
               f"gradient is almost-linear below o(√ln L) and has no sub-quadratic algorithm above Θ(√ln L). In {scale}. "
               "The dashed red line is the scale √ln L with constant 1; the theorem's constants are unknown, so no point "
               "is a verdict.")
    return Chart(fig, title, caption)


def ratio_chart(thresholds: pd.DataFrame, *, convention: str = "hu", title: str | None = None) -> Chart:
    """The largest ratio over heads and windows by layer, one line style per L, in either scale."""
    column = CONVENTIONS[convention][1]
    title = title or ("max(γ_q, γ_k)/√ln L by layer" + ("" if convention == "hu" else " (Alman–Song's scale)"))
    thresholds = thresholds[thresholds["layer"].notna()] if "layer" in thresholds.columns else thresholds.iloc[0:0]
    if not _has(thresholds, column):
        return empty_chart(title, "no thresholds rows for this selection")
    fig, (ax,) = new_figure()
    lengths = sorted(thresholds["seq_len"].dropna().astype(int).unique())
    styles = {L: LINE_STYLES[i % len(LINE_STYLES)] for i, L in enumerate(lengths)}
    runs, faint = [], False
    for run, run_rows in by_run(thresholds):
        runs.append(run)
        series = checkpoints_in_order(run_rows)
        faint |= len(series) > 1
        for j, (checkpoint, by_checkpoint) in enumerate(series):
            for L, g in by_checkpoint.groupby("seq_len", sort=True):
                g = g.groupby("layer", as_index=False)[column].max().sort_values("layer")
                run_line(ax, g["layer"], g[column], run=run, position=j, count=len(series), style=styles[int(L)],
                         description=f"{run} · {checkpoint} · L {int(L)}")
    ax.axhline(1.0, color=THEORY["rank"], ls="--", lw=1, label="ratio 1: γ = √ln L (asymptotic scale)")
    run_legend(ax, runs, faint=faint, styles={str(L): s for L, s in styles.items()}, style_name="L =")
    ax.set_xlabel("layer")
    integer_ticks(ax)
    ax.set_ylabel("max(γ_q, γ_k) / √ln L, " + ("Hu's β = 1 scale" if convention == "hu" else "Alman–Song's scale"))
    ax.set_title(title, fontsize=10, pad=TITLE_PAD)
    _caveat(ax)
    legend(fig)
    caption = ("The largest ratio over heads and windows per layer and window length L; 1 marks γ = √ln L. "
               + ("Hu et al.'s literal β = 1 scale." if convention == "hu" else
                  "Alman–Song's scale: √d_head times Hu's, so the same heads sit √d_head higher."))
    return Chart(fig, title, caption)


def lora_term_chart(thresholds: pd.DataFrame, *, title: str = "The LoRA term beside the whole query projection") -> Chart:
    """By layer: the largest γ_q (the query projection as run) and the largest γ of the LoRA term s·X·Aᵀ·Bᵀ alone."""
    rows = thresholds[thresholds["layer"].notna()] if "layer" in thresholds.columns else thresholds.iloc[0:0]
    if rows.empty or "gamma_lora" not in rows.columns or rows["gamma_lora"].isna().all():
        return empty_chart(title, "no LoRA term in this selection (full fine-tunes have none)")
    fig, (ax,) = new_figure()
    runs, faint = [], False
    for run, run_rows in by_run(rows):
        runs.append(run)
        series = checkpoints_in_order(run_rows)
        faint |= len(series) > 1
        for j, (checkpoint, g) in enumerate(series):
            g = g.groupby("layer", as_index=False)[["gamma_q", "gamma_lora"]].max().sort_values("layer")
            run_line(ax, g["layer"], g["gamma_q"], run=run, position=j, count=len(series),
                     description=f"{run} · {checkpoint} · gamma_q")
            if g["gamma_lora"].notna().any():
                run_line(ax, g["layer"], g["gamma_lora"], run=run, position=j, count=len(series), style="--",
                         description=f"{run} · {checkpoint} · gamma_lora")
    run_legend(ax, runs, faint=faint, styles={"γ_q (W_Q,eff as run)": "-", "γ of s·X·Aᵀ·Bᵀ alone": "--"}, style_name="")
    ax.set_xlabel("layer")
    integer_ticks(ax)
    ax.set_ylabel("max over heads, windows and L")
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = "How much of the query norm the adapter's own term carries, per layer (largest values)."
    return Chart(fig, title, caption)


def logit_chart(thresholds: pd.DataFrame, *, title: str = "Largest logit |q·k|/√d_head against ln L") -> Chart:
    """Per run, checkpoint and layer: the largest logit_max at each measured L against ln L, with logit = ln L."""
    if not _has(thresholds, "logit_max"):
        return empty_chart(title, "no logit_max in this selection (measured by the thresholds probe since issue 21)")
    rows = thresholds[thresholds["layer"].notna()].assign(ln_l=np.log(thresholds["seq_len"].astype(float)))
    layers = sorted(rows["layer"].unique())
    styles = {int(layer): LINE_STYLES[i % len(LINE_STYLES)] for i, layer in enumerate(layers)}
    fig, (ax,) = new_figure()
    runs, faint = grouped_lines(ax, rows, x="ln_l", y="logit_max", by="layer", agg="max",
                                style=lambda layer: styles.get(int(layer), "-"), label=lambda layer: f"layer {int(layer)}")
    x = np.sort(rows["ln_l"].unique())
    x = np.linspace(x.min() * 0.95, x.max() * 1.05, 20)
    ax.plot(x, x, color=THEORY["rank"], ls="--", lw=1.2, label="logit = ln L: B² at B = √ln L (asymptotic)")
    run_legend(ax, runs, faint=faint, styles={f"{int(k)}": v for k, v in styles.items()}, style_name="layer")
    ax.set_xlabel("ln L (window length L)")
    ax.set_ylabel("largest |q_i·k_j|/√d_head over attended pairs")
    ax.set_title(title, fontsize=10, pad=TITLE_PAD)
    _caveat(ax)
    legend(fig)
    caption = ("The largest pre-softmax logit over attended pairs (causal models: j ≤ i; after RoPE where the model "
               "applies it), which needs no split of 1/√d_head between q and k: entries of Q and K bounded by B bound it "
               "by B², and Alman–Song's transition at B = Θ(√ln n) puts it on the scale ln L (dashed, constant 1).")
    return Chart(fig, title, caption)


def control_chart(thresholds: pd.DataFrame, *, title: str = "Measured maxima beside the extreme-value control") -> Chart:
    """Left: per run and checkpoint, the largest γ and the largest control σ·√(2 ln(L·d_head)) (both in Hu's scale)
    against √ln L; right: the largest γ/control ratio per layer against L."""
    if not _has(thresholds, "evt_q", "evt_k"):
        return empty_chart(title, "no extreme-value control in this selection (measured since issue 21)")
    rows = thresholds[thresholds["layer"].notna()]
    rows = rows.assign(gamma=_gamma(rows), evt=rows[["evt_q", "evt_k"]].max(axis=1),
                       evt_ratio=rows[["evt_ratio_q", "evt_ratio_k"]].max(axis=1),
                       sqrt_ln_l=np.sqrt(np.log(rows["seq_len"].astype(float))))
    layers = sorted(rows["layer"].unique())
    styles = {int(layer): LINE_STYLES[i % len(LINE_STYLES)] for i, layer in enumerate(layers)}
    fig, (left, right) = new_figure(ncols=2, width=4.6)
    runs, faint = [], False
    for run, run_rows in by_run(rows):
        runs.append(run)
        series = checkpoints_in_order(run_rows)
        faint |= len(series) > 1
        for j, (checkpoint, g) in enumerate(series):
            peak = g.groupby("sqrt_ln_l", as_index=False)[["gamma", "evt"]].max().sort_values("sqrt_ln_l")
            run_line(left, peak["sqrt_ln_l"], peak["gamma"], run=run, position=j, count=len(series),
                     description=f"{run} · {checkpoint} · measured")
            run_line(left, peak["sqrt_ln_l"], peak["evt"], run=run, position=j, count=len(series), style=":",
                     marker="x", description=f"{run} · {checkpoint} · control")
            for layer, by_layer in g.groupby("layer", sort=True):
                r = by_layer.groupby("seq_len", as_index=False)["evt_ratio"].max().sort_values("seq_len")
                run_line(right, r["seq_len"], r["evt_ratio"], run=run, position=j, count=len(series),
                         style=styles.get(int(layer), "-"), description=f"{run} · {checkpoint} · layer {int(layer)}")
    right.axhline(1.0, color=THEORY["control"], ls="--", lw=1, label="γ = control: as large as Gaussian entries of that spread")
    run_legend(left, runs, faint=faint, styles={"measured largest γ": "-", "control σ·√(2 ln(L·d_head))": ":"},
               style_name="")
    run_legend(right, [], styles={f"{int(k)}": v for k, v in styles.items()}, style_name="layer")
    left.set_xlabel("√ln L (window length L)")
    left.set_ylabel("largest over layers, heads, windows (Hu's scale)")
    right.set_xscale("log", base=2)
    right.set_xlabel("window length L")
    right.set_ylabel("largest γ / control")
    _caveat(left)
    fig.suptitle(title, fontsize=10)
    legend(fig)
    caption = ("The maximum of L·d_head Gaussian entries of spread σ grows like σ·√(2 ln(L·d_head)) whatever the regime, "
               "so growth with L alone says nothing about the theorem: read the measured slope beside the control's. The "
               "ratio γ/control is the same in both scales; √(2 ln n) is the leading order, so Gaussian entries give a "
               "little under 1 at these sizes.")
    return Chart(fig, title, caption)
