"""Figures of the ``deltas`` table: how large each module's update is, by layer and role."""

from __future__ import annotations

import pandas as pd

from lab.present.figures.common import Chart, empty_chart, integer_ticks, layer_lines, legend, log_if_wide, new_figure
from lab.present.frames import present, with_layer


def norms_chart(deltas: pd.DataFrame, *, title: str = "Update size ‖ΔW‖_F by layer") -> Chart:
    """Frobenius norm of each scaled update against layer, one line per role (and run/checkpoint when several)."""
    deltas = with_layer(deltas)
    if deltas.empty:
        return empty_chart(title, "no per-layer modules in this selection")
    fig, (ax,) = new_figure()
    layer_lines(deltas[present(deltas, ["run", "checkpoint", "step", "role", "layer", "fro_norm"])], [(ax, "fro_norm")])
    ax.set_xlabel("layer")
    integer_ticks(ax)
    ax.set_ylabel("‖ΔW‖_F (weight units)")
    log_if_wide(ax, deltas["fro_norm"])
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = "Where fine-tuning moved the weights most (scaled update, adapters measured from their factors)."
    return Chart(fig, title, caption)
