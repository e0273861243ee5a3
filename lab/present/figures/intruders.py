"""Figures of the intruders probe (Shuttleworth et al. 2024's intruder dimensions, :mod:`lab.probes.intruders`):
a layer × role map of the count at one (ε, k), and the count against ε per run.

A singular vector among the top k of W + ΔW is an intruder when its largest |cos| with every singular
vector of the base W (same side) is below ε; the count can only grow with ε and with k.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lab.present import intruders as intr
from lab.present.figures.common import (
    LINE_STYLES, THEORY, Chart, by_run, empty_chart, grouped_lines, legend, new_figure, run_legend,
)
from lab.present.frames import with_layer

MAX_PANELS = 4


def heatmap_chart(rows: pd.DataFrame, threshold: float, top_k: int, side: str = intr.DEFAULT_SIDE, *,
                  title: str | None = None) -> Chart:
    """Per run (one panel each, at most four), the intruder count at (ε, k) on one side: layers down, roles
    across, each cell annotated with its count. Give one checkpoint per run (callers pick the last)."""
    title = title or f"Intruders at ε = {threshold:g}, k = {int(top_k)} ({side} vectors), layer × role"
    rows = with_layer(intr.at(rows, threshold, top_k, side)) if not rows.empty else rows
    if rows.empty:
        return empty_chart(title, f"no intruder counts at ε = {threshold:g}, k = {int(top_k)} ({side}) with a layer "
                                  "index in this selection")
    every_run = by_run(rows)
    runs = every_run[:MAX_PANELS]
    layers = sorted(rows["layer"].dropna().astype(int).unique())
    fig, axes = new_figure(ncols=len(runs), width=max(3.2, 0.7 * rows["role"].nunique() + 2.2),
                           height=max(2.4, 0.35 * len(layers) + 1.8))
    vmax = max(1, int(rows["examined"].max()))
    image = None
    for ax, (run, mine) in zip(axes, runs):
        grid = mine.pivot_table(index="layer", columns="role", values="intruder_count", aggfunc="sum").sort_index()
        values = grid.to_numpy(dtype=float)
        image = ax.imshow(values, aspect="auto", cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        ax.grid(False)
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=7,
                        color="white" if v < 0.6 * vmax else "black")
        ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns], fontsize=8)
        ax.set_yticks(range(grid.shape[0]), [str(int(x)) for x in grid.index], fontsize=8)
        ax.set_xlabel("role")
        ax.set_ylabel("layer")
        checkpoints = ", ".join(sorted(mine["checkpoint"].astype(str).unique())) if "checkpoint" in mine.columns else ""
        ax.set_title(f"{run}" + (f" ({checkpoints})" if checkpoints else ""), fontsize=9)
    bar = fig.colorbar(image, ax=axes)
    bar.set_label(f"intruders in the top {int(top_k)}")
    fig.suptitle(title, fontsize=10)
    caption = (f"Each cell counts the top-{int(top_k)} {side} singular vectors of W + ΔW whose largest |cos| with every "
               f"singular vector of the base W is below ε = {threshold:g}: directions the fine-tune added that the base "
               "did not have. A layer with several modules of one role shows their sum."
               + (f" The first {MAX_PANELS} of {len(every_run)} runs (by name); the dashboard shows any selection."
                  if len(every_run) > MAX_PANELS else ""))
    return Chart(fig, title, caption)


def sweep_chart(rows: pd.DataFrame, top_k: int, *, title: str | None = None) -> Chart:
    """Mean intruder count per module against ε at depth k, one line per run (earlier checkpoints faint), left
    vectors solid and right vectors dashed, with the mean number examined dotted."""
    title = title or f"Intruders against ε at k = {int(top_k)} (mean per module)"
    rows = rows[(rows["top_k"].astype(int) == int(top_k)) & (rows["checkpoint"].astype(str) != "controls")] \
        if not rows.empty else rows
    if rows.empty:
        return empty_chart(title, f"no intruder counts at k = {int(top_k)} in this selection")
    sides = sorted(rows["side"].dropna().unique())
    styles = {s: LINE_STYLES[i % len(LINE_STYLES)] for i, s in enumerate(sides)}
    fig, (ax,) = new_figure()
    runs, faint = grouped_lines(ax, rows, x="threshold", y="intruder_count", by="side", agg="mean",
                                style=lambda side: styles[side], label=str)
    examined = rows.groupby(["run", "checkpoint", "side", "module"])["examined"].first().mean() \
        if "run" in rows.columns else rows["examined"].mean()
    peak = rows.groupby(["run", "checkpoint", "side", "threshold"])["intruder_count"].mean().max() \
        if "run" in rows.columns else rows.groupby(["side", "threshold"])["intruder_count"].mean().max()
    if peak >= 0.5 * float(examined):  # the ceiling drawn only where it does not flatten the curves
        ax.axhline(float(examined), color=THEORY["max"], ls=":", lw=1, label="vectors examined (mean per module)")
    else:
        ax.plot([], [], color=THEORY["max"], ls=":", lw=1, label=f"vectors examined: {float(examined):.3g} per module (above)")
    run_legend(ax, runs, faint=faint, styles=styles, style_name="side")
    ax.set_xlabel("ε (intruder: largest |cos| with W's vectors below ε)")
    ax.set_ylabel(f"intruders in the top {int(top_k)}, per module")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = ("How the count depends on the threshold: it can only grow with ε (every vector is an intruder as ε "
               "approaches 1 unless it matches one of W's exactly), so compare runs at the same ε rather than read the "
               "rise itself.")
    return Chart(fig, title, caption)
