"""Figures of the LoRA complexity thresholds (table ``thresholds``; no probe writes it yet).

Theory (Hu et al., "Computational Limits of Low-Rank Adaptation", 2024): LoRA's gradient admits
almost-linear-time algorithms when ‖X·W_Q^eff‖_∞ and ‖X·W_K‖_∞ are o(√ln L), and none that is
sub-quadratic above Θ(√ln L) (under SETH). The bound is asymptotic in L: it gives a scale to
compare with, not a verdict on a finite model, and every figure says so.

Columns drawn (from the design; the probe that writes the table declares them in
``lab.store.schema``): ``layer``, ``seq_len`` (L) and ``ratio`` = max(‖X·W_Q^eff‖_∞, ‖X·W_K‖_∞)/√ln L,
or ``norm_q``/``norm_k`` from which the ratio is computed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lab.report.figures.common import ASYMPTOTIC, THEORY, Chart, colour, integer_ticks, empty_chart, legend, new_figure

REQUIRED = ("layer", "seq_len")


def with_ratio(rows: pd.DataFrame) -> pd.DataFrame | None:
    """``rows`` with a ``ratio`` column (norm / √ln L), or None when the columns to compute it are missing."""
    if not set(REQUIRED) <= set(rows.columns):
        return None
    if "ratio" in rows.columns:
        return rows
    norms = [c for c in ("norm_q", "norm_k") if c in rows.columns]
    if not norms:
        return None
    bound = np.sqrt(np.log(rows["seq_len"].astype(float)))
    return rows.assign(ratio=rows[norms].max(axis=1) / bound)


def ratio_chart(rows: pd.DataFrame, *, title: str = "Norm ratio to √ln L by layer") -> Chart | None:
    """max(‖X·W_Q^eff‖_∞, ‖X·W_K‖_∞)/√ln L by layer, one line per sequence length, with the line at 1."""
    rows = with_ratio(rows)
    if rows is None:
        return None
    if rows.empty:
        return empty_chart(title, "no threshold rows for this selection")
    fig, (ax,) = new_figure()
    for i, (length, g) in enumerate(rows.groupby("seq_len", sort=True)):
        g = g.groupby("layer", as_index=False)["ratio"].max().sort_values("layer")
        ax.plot(g["layer"], g["ratio"], marker="o", ms=3, color=colour(i), label=f"L = {int(length)} (max over heads)")
    ax.axhline(1.0, color=THEORY["rank"], ls="--", lw=1.2, label="Γ = √ln L (Θ-threshold, asymptotic)")
    ax.set_xlabel("layer")
    integer_ticks(ax)
    ax.set_ylabel("largest entry / √ln L (dimensionless)")
    ax.set_title(title, fontsize=10)
    ax.text(0.01, 0.01, ASYMPTOTIC, transform=ax.transAxes, fontsize=7, color="#555555")
    legend(fig)
    caption = ("Where the attention inputs' largest entries sit relative to √ln L; the theory is asymptotic in L, "
               "so read this as a scale, not as a pass/fail line.")
    return Chart(fig, title, caption)
