"""Figures of external entanglement (table ``attention_entanglement``; no probe writes it yet).

The attention probability matrix P (L×L) of each layer and head is tensorized like a weight
(DESIGN.md, "External artificial entanglement") and its entropy profile compared between the
base and the fine-tuned model. Columns drawn: ``cut``, ``entropy`` and ``model`` (base / tuned),
with ``layer`` and ``head`` averaged over.
"""

from __future__ import annotations

import pandas as pd

from lab.report.figures.common import NATS, THEORY, Chart, colour, empty_chart, legend, new_figure

REQUIRED = ("cut", "entropy", "model")


def profile_chart(rows: pd.DataFrame, *, title: str = "Attention entropy profile: base vs tuned") -> Chart | None:
    """Mean entropy against cut for the base and the tuned model (and Page's value when given)."""
    if not set(REQUIRED) <= set(rows.columns):
        return None
    if rows.empty:
        return empty_chart(title, "no attention rows for this selection")
    fig, (ax,) = new_figure()
    if "page_entropy" in rows.columns:
        page = rows.groupby("cut", as_index=False)["page_entropy"].mean()
        ax.plot(page["cut"], page["page_entropy"], ls="--", color=THEORY["page"], label="Page: random state (theory)")
    for i, (model, g) in enumerate(rows.groupby("model", sort=True)):
        g = g.groupby("cut", as_index=False)["entropy"].mean()
        ax.plot(g["cut"], g["entropy"], marker="o", ms=3, color=colour(i), label=f"{model} (mean over layers and heads)")
    ax.set_xlabel("cut k")
    ax.set_ylabel(NATS)
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = "If fine-tuning changes the weights but not how attention entangles tokens, the two curves coincide."
    return Chart(fig, title, caption)
