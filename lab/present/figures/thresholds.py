"""Figures of the thresholds probe (Hu et al., arXiv 2406.03136): the largest γ against √ln L with the
theorem's scale √ln L drawn in, the ratio max(γ_q, γ_k)/√ln L by layer, and the LoRA term beside
the whole query projection.

Every figure says that the bound is asymptotic (o(√ln L) vs Θ(√ln L), constants unknown): the line
√ln L is a scale to read the measurements against, not a boundary they cross.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lab.present.figures.common import (
    ASYMPTOTIC, LINE_STYLES, THEORY, Chart, by_run, checkpoints_in_order, empty_chart, integer_ticks, legend,
    new_figure, run_legend, run_line,
)


def _caveat(ax) -> None:
    ax.text(0.01, 0.99, ASYMPTOTIC, transform=ax.transAxes, ha="left", va="top", fontsize=7, color=THEORY["rank"],
            style="italic")


def _gamma(rows: pd.DataFrame) -> pd.Series:
    return rows[["gamma_q", "gamma_k"]].max(axis=1)


def _growth_panel(ax, thresholds: pd.DataFrame) -> None:
    rows = thresholds.assign(gamma=_gamma(thresholds), sqrt_ln_l=np.sqrt(np.log(thresholds["seq_len"].astype(float))))
    layers = sorted(rows["layer"].dropna().unique())
    styles = {int(layer): LINE_STYLES[i % len(LINE_STYLES)] for i, layer in enumerate(layers)}
    runs, faint = [], False
    for run, run_rows in by_run(rows):
        runs.append(run)
        series = checkpoints_in_order(run_rows)
        faint |= len(series) > 1
        for j, (checkpoint, by_checkpoint) in enumerate(series):
            for layer, g in by_checkpoint.groupby("layer", sort=True):
                g = g.groupby("sqrt_ln_l", as_index=False)["gamma"].max().sort_values("sqrt_ln_l")
                run_line(ax, g["sqrt_ln_l"], g["gamma"], run=run, position=j, count=len(series),
                         style=styles.get(int(layer), "-"), description=f"{run} · {checkpoint} · layer {int(layer)}")
    x = np.sort(rows["sqrt_ln_l"].unique())
    x = np.linspace(x.min() * 0.95, x.max() * 1.05, 20) if len(x) else x
    ax.plot(x, x, color=THEORY["rank"], ls="--", lw=1.2, label="γ = √ln L, the theorem's scale (asymptotic)")
    run_legend(ax, runs, faint=faint, styles={f"{int(k)}": v for k, v in styles.items()}, style_name="layer")
    ax.set_xlabel("√ln L (window length L)")
    ax.set_ylabel("largest max(γ_q, γ_k)")
    _caveat(ax)


def growth_chart(thresholds: pd.DataFrame, *, title: str = "Largest γ against √ln L") -> Chart:
    """Per run, checkpoint and layer: the largest max(γ_q, γ_k) at each measured L against √ln L, with γ = √ln L."""
    if thresholds.empty:
        return empty_chart(title, "no thresholds rows for this selection")
    fig, (ax,) = new_figure()
    _growth_panel(ax, thresholds)
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = ("How the query/key norms grow with the window length, which is what the theorem is about: the LoRA "
               "gradient is almost-linear below o(√ln L) and has no sub-quadratic algorithm above Θ(√ln L). The dashed "
               "red line is the scale √ln L with constant 1; the theorem's constants are unknown, so no point is a verdict.")
    return Chart(fig, title, caption)


def ratio_chart(thresholds: pd.DataFrame, *, title: str = "max(γ_q, γ_k)/√ln L by layer") -> Chart:
    """The largest ratio over heads and windows by layer, one line style per L."""
    thresholds = thresholds[thresholds["layer"].notna()] if "layer" in thresholds.columns else thresholds.iloc[0:0]
    if thresholds.empty:
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
                g = g.groupby("layer", as_index=False)["ratio"].max().sort_values("layer")
                run_line(ax, g["layer"], g["ratio"], run=run, position=j, count=len(series), style=styles[int(L)],
                         description=f"{run} · {checkpoint} · L {int(L)}")
    ax.axhline(1.0, color=THEORY["rank"], ls="--", lw=1, label="ratio 1: γ = √ln L (asymptotic scale)")
    run_legend(ax, runs, faint=faint, styles={str(L): s for L, s in styles.items()}, style_name="L =")
    ax.set_xlabel("layer")
    integer_ticks(ax)
    ax.set_ylabel("max(γ_q, γ_k) / √ln L")
    ax.set_title(title, fontsize=10)
    _caveat(ax)
    legend(fig)
    caption = "The largest ratio over heads and windows per layer and window length L; 1 marks γ = √ln L."
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
