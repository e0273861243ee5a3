"""Figures of the esd probe (WeightWatcher's metrics, :mod:`lab.probes.esd`): the power-law exponent α of
the eigenvalues λ = σ² by layer and role, for the base W beside the fine-tuned W + ΔW, and the shift
α(W + ΔW) − α(W) module by module.

α comes from Clauset, Shalizi & Newman's fit (xmin at the smallest Kolmogorov–Smirnov distance D), as
WeightWatcher's default fit='PL' makes it; a smaller α is a heavier tail. Matrices without a fit
(fewer than two eigenvalues above 1e-5) are left out.
"""

from __future__ import annotations

import pandas as pd

from lab.present.esd import LABELS, alpha_pairs, long_alpha
from lab.present.figures.common import (
    THEORY, Chart, empty_chart, integer_ticks, layer_lines, legend, log_if_wide, new_figure,
)
from lab.present.frames import with_layer


def alpha_chart(esd: pd.DataFrame, *, title: str = "Power-law α by layer: base W and W + ΔW") -> Chart:
    """α by layer, one line per role (and run/checkpoint when several): left the base W, right W + ΔW (ΔW when
    W + ΔW was not analysed), on one y scale so the panels compare."""
    rows = with_layer(long_alpha(esd))
    if rows.empty:
        return empty_chart(title, "no fitted α with a layer index in this selection")
    after = "tuned" if (rows["source"] == "tuned").any() else "delta"
    panels = [(source, rows[rows["source"] == source]) for source in ("weight", after)]
    panels = [(source, part) for source, part in panels if not part.empty]
    fig, axes = new_figure(ncols=len(panels), width=4.6, sharey=True)
    for ax, (source, part) in zip(axes, panels):
        layer_lines(part, [(ax, "alpha")])
        ax.set_title(f"α of {LABELS[source]}", fontsize=10)
        ax.set_xlabel("layer")
        integer_ticks(ax)
    axes[0].set_ylabel("power-law exponent α\n(smaller: heavier tail)")
    log_if_wide(axes[0], rows["alpha"])
    fig.suptitle(title, fontsize=11)
    legend(fig)
    caption = ("WeightWatcher's α of each matrix's eigenvalues λ = σ² (Clauset–Shalizi–Newman fit, xmin at the smallest "
               "KS distance), mean over the modules of a layer and role. Read the two panels at the same layer: where the "
               "right one is lower, fine-tuning made that layer's spectrum heavier-tailed. Runs of one base share the left "
               "panel's lines (drawn once per run, on top of each other).")
    return Chart(fig, title, caption)


def shift_chart(esd: pd.DataFrame, *, title: str = "How fine-tuning moved α: α(W + ΔW) − α(W) by layer") -> Chart:
    """Per module α(W + ΔW) − α(W), by layer, one line per role (and run/checkpoint when several), with 0 marked."""
    pairs = with_layer(alpha_pairs(esd))
    pairs = pairs[pairs["alpha_shift"].notna()]
    if pairs.empty:
        return empty_chart(title, "no module with α fitted for both W and W + ΔW in this selection (needs --base and "
                                  "the esd targets weight and tuned)")
    fig, (ax,) = new_figure()
    layer_lines(pairs, [(ax, "alpha_shift")])
    ax.axhline(0.0, color=THEORY["page"], ls="--", lw=1, label="0: α unchanged by fine-tuning")
    ax.set_xlabel("layer")
    integer_ticks(ax)
    ax.set_ylabel("α(W + ΔW) − α(W)")
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = ("Below the dashed line fine-tuning lowered α (a heavier-tailed spectrum than the base's), above it raised α; "
               "each point is the mean over the modules of a layer and role.")
    return Chart(fig, title, caption)
