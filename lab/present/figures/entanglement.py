"""Figures of the internal entanglement probe: profiles with Page's curve and the maximum,
the layer × cut heatmap, and the valley at the row|column cut by layer and by step.

Theory drawn in (DESIGN.md, "Internal artificial entanglement"): for a state on D_left × D_right
dimensions the entropy is at most ln min(D_left, D_right), and a random state sits at Page's value
S_Page = Σ_{k=d_B+1}^{d_A d_B} 1/k − (d_A−1)/(2 d_B) (Page, PRL 71, 1291, 1993). A rank-r update
has entropy ≤ ln r at the row|column cut: the "entanglement valley".
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from lab.present.figures.common import (
    NATS, THEORY, Chart, by_run, checkpoints_in_order, empty_chart, integer_ticks, layer_lines, legend, new_figure,
    run_legend, run_line, styles_for,
)
from lab.present.frames import distinct, measured, relative_to_page, with_layer

SERIES = ["run", "checkpoint", "step", "source"]


def profile_chart(rows: pd.DataFrame, controls: pd.DataFrame | None = None, *,
                  rank_bound: float | Iterable[float] | None = None, title: str | None = None) -> Chart:
    """Entropy against cut for one module (one line per run/checkpoint/step/source), with the
    maximum ln min(D_left, D_right), Page's random-state value, matching random controls, the
    row|column cut marked and, given the updates' rank bounds r (one or several), the ceiling ln r at that cut."""
    rows = measured(rows)
    if rows.empty:
        return empty_chart(title or "Entanglement profile", "no profile rows for this selection")
    module = ", ".join(distinct(rows, "module")[:3])
    title = title or f"Entanglement profile: {module}"
    fig, (ax,) = new_figure()
    theory = rows.sort_values("cut").drop_duplicates("cut")
    ax.plot(theory["cut"], theory["max_entropy"], ls=":", color=THEORY["max"], lw=1.5,
            label="maximum ln min(D_left, D_right)")
    ax.plot(theory["cut"], theory["page_entropy"], ls="--", color=THEORY["page"], lw=1.5,
            label="Page: random state (theory)")
    if controls is not None and not controls.empty:
        labelled = set()
        for (source, _), g in controls.groupby(["source", "module"], dropna=False):
            g = g.sort_values("cut").drop_duplicates("cut")
            lora = source == "random_lora"
            label = "control: untrained LoRA, Gaussian B·A of rank r" if lora else "control: Gaussian matrix"
            ax.plot(g["cut"], g["entropy"], color=THEORY["lora_control" if lora else "control"], lw=3, alpha=0.8,
                    ls="-." if lora else "-", label=None if label in labelled else label, zorder=1)
            labelled.add(label)
    _draw_series(ax, rows)
    row_cut = int(theory["row_sites"].iloc[0])
    ax.axvline(row_cut, color=THEORY["rank"], lw=1, alpha=0.6)
    ax.annotate("row|column cut", (row_cut, 0), xycoords=("data", "axes fraction"), xytext=(3, 4),
                textcoords="offset points", fontsize=7, color=THEORY["rank"])
    bounds = [rank_bound] if rank_bound is None or np.isscalar(rank_bound) else list(rank_bound)
    bounds = sorted({int(r) for r in bounds if r is not None and not pd.isna(r) and float(r) >= 1})
    for r in bounds:
        ceiling = float(np.log(r))
        ax.plot([row_cut - 0.35, row_cut + 0.35], [ceiling, ceiling], color=THEORY["rank"], lw=2.5,
                label="ceiling ln r at the row|column cut" if r == bounds[0] else None)
        ax.annotate(f"ln {r}", (row_cut + 0.35, ceiling), xytext=(2, -3), textcoords="offset points",
                    fontsize=7, color=THEORY["rank"])
    integer_ticks(ax)
    ax.set_xlabel("cut k (sites to the left; row sites first, then column sites)")
    ax.set_ylabel(NATS)
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = ("A low-rank update dips below Page's curve at the row|column cut (the valley, at most ln r there, an "
               "identity of its rank); a random matrix follows the dashed curve, while a trained full-rank update "
               "(a full fine-tune) can dip there too. The grey controls are measured on random matrices of the same "
               "shape and, for adapters, on random factors of the same rank: what structure alone gives.")
    return Chart(fig, title, caption)


def _draw_series(ax, rows: pd.DataFrame) -> None:
    """One line per run/checkpoint/step/source: the run's colour, its checkpoints in training order
    from faint to solid, and the source (delta, weight) or module as the line style."""
    style_key, styles = styles_for(rows, ("source", "module"))
    runs, faint = [], False
    for run, run_rows in by_run(rows):
        runs.append(run)
        series = checkpoints_in_order(run_rows)
        faint |= len(series) > 1
        for j, (checkpoint, by_checkpoint) in enumerate(series):
            for value, g in (by_checkpoint.groupby(style_key, sort=True) if style_key else [(None, by_checkpoint)]):
                g = g.sort_values("cut")
                description = " · ".join(str(p) for p in (run, checkpoint, value) if p not in (None, ""))
                run_line(ax, g["cut"], g["entropy"], run=run, position=j, count=len(series),
                         style=styles.get(value, "-"), description=description)
    run_legend(ax, runs, faint=faint, styles=styles, style_name=style_key or "")


def heatmap_chart(rows: pd.DataFrame, *, title: str | None = None) -> Chart:
    """Entropy relative to Page's value, S/S_Page, for one role: layers down, cuts across."""
    rows = measured(with_layer(rows))
    if rows.empty:
        return empty_chart(title or "Layer × cut", "no rows with a layer index for this selection")
    rows = rows.assign(relative=relative_to_page(rows))
    grid = rows.pivot_table(index="layer", columns="cut", values="relative", aggfunc="mean").sort_index()
    roles = ", ".join(distinct(rows, "role"))
    title = title or f"Layer × cut, S/S_Page: {roles}"
    fig, (ax,) = new_figure(height=max(2.4, 0.35 * len(grid) + 1.6))
    image = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap="viridis", vmin=0, vmax=max(1.0, np.nanmax(grid.to_numpy(dtype=float))),
                      extent=(grid.columns.min() - 0.5, grid.columns.max() + 0.5, grid.index.max() + 0.5, grid.index.min() - 0.5),
                      interpolation="nearest")
    ax.grid(False)
    bar = fig.colorbar(image, ax=ax)
    bar.set_label("S / S_Page (1 = random state)")
    row_cuts = distinct(rows, "row_sites")
    if len(row_cuts) == 1:
        ax.axvline(row_cuts[0], color="white", ls="--", lw=1)
    ax.set_xlabel("cut k")
    ax.set_ylabel("layer")
    ax.set_yticks(grid.index.to_numpy())
    ax.set_title(title, fontsize=10)
    caption = ("Each cell is a layer's entropy at a cut divided by Page's random-state value; the dashed line is the "
               "row|column cut, where a low-rank update shows as a dark column.")
    return Chart(fig, title, caption)


def valley_chart(valleys: pd.DataFrame, *, title: str = "Entanglement valley by layer") -> Chart:
    """Two panels by layer: valley depth (Page − S at the row|column cut) and the entropy there
    next to its ceiling ln r."""
    valleys = measured(with_layer(valleys))
    if valleys.empty:
        return empty_chart(title, "no per-layer modules in this selection")
    fig, (left, right) = new_figure(ncols=2, width=4.6)
    layer_lines(valleys, [(left, "depth"), (right, "valley_entropy")])
    if "rank_bound" in valleys.columns:  # one ceiling line per distinct rank, not per series
        for r in distinct(valleys, "rank_bound"):
            right.axhline(np.log(float(r)), color=THEORY["rank"], ls="--", lw=1, alpha=0.7)
            right.annotate(f"ln {int(r)}", (1.0, np.log(float(r))), xycoords=("axes fraction", "data"),
                           xytext=(-24, 2), textcoords="offset points", fontsize=7, color=THEORY["rank"])
    left.axhline(0, color=THEORY["page"], ls="--", lw=1, label="0 = Page's value (random state)")
    for ax in (left, right):
        ax.set_xlabel("layer")
        integer_ticks(ax)
    left.set_ylabel("S_Page − S (nats)")
    right.set_ylabel("S at the row|column cut (nats)")
    left.set_title("depth below a random state", fontsize=10)
    right.set_title("entropy at the cut vs its ceiling ln r (red)", fontsize=10)
    fig.suptitle(title, fontsize=11)
    legend(fig)
    caption = ("Deeper valleys mean the update concentrates in fewer directions; a rank-r update's entropy at the "
               "row|column cut cannot exceed ln r (red dashed line).")
    return Chart(fig, title, caption)


def steps_chart(valleys: pd.DataFrame, *, title: str = "Valley over training steps") -> Chart:
    """Entropy at the row|column cut against training step, one line per role (mean over layers)."""
    valleys = measured(valleys[valleys["step"].notna()] if "step" in valleys.columns else valleys.iloc[0:0])
    if valleys.empty or valleys["step"].nunique() < 2:
        return empty_chart(title, "fewer than two training steps in this selection")
    fig, (ax,) = new_figure()
    style_key, styles = styles_for(valleys, ("role",))
    runs = []
    for run, run_rows in by_run(valleys):
        runs.append(run)
        for value, g in (run_rows.groupby(style_key, sort=True) if style_key else [(None, run_rows)]):
            g = g.groupby("step", as_index=False).mean(numeric_only=True).sort_values("step")
            run_line(ax, g["step"], g["valley_entropy"], run=run, style=styles.get(value, "-"),
                     description=" · ".join(str(p) for p in (run, value) if p not in (None, "")))
            ax.plot(g["step"], g["valley_page"], ls=styles.get(value, "-"), lw=1, color=THEORY["page"], alpha=0.6)
    run_legend(ax, runs, styles=styles, style_name=style_key or "")
    ax.plot([], [], color=THEORY["page"], alpha=0.6, label="Page's value (grey, theory)")
    ax.set_xlabel("training step")
    integer_ticks(ax)
    ax.set_ylabel("entropy at row|column cut (nats)")
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = "How the update's entropy where outputs meet inputs evolves while training (mean over layers per role)."
    return Chart(fig, title, caption)
