"""Figures of the attention probe: a head's mean entropy profile against ℓ with the two fitted laws
the summary table holds, the no-hair comparison by layer (how far the attention moved beside how far
W_q and W_v moved), and a layer × head map of the no-hair entropy difference.

Definitions (lab.store.schema, attention_summary): ℓ = ln min(D_left, D_right) of a cut; the
volume law S = a + b·ℓ and the area law with a log correction S = a + b·ln ℓ are least-squares
fits over the cuts of the windows' mean profile (arXiv 2601.06788).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lab.present.figures.common import (
    NATS, THEORY, Chart, by_run, checkpoints_in_order, empty_chart, integer_ticks, layer_lines, legend, new_figure,
    run_legend, run_line,
)
from lab.present.frames import distinct


def _mean_profile(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over windows of the tuned and the base entropy per cut, with ℓ (= max_entropy)."""
    return (rows.groupby("cut", as_index=False)
                .agg(ell=("max_entropy", "first"), entropy=("entropy", "mean"), base_entropy=("base_entropy", "mean"))
                .sort_values("cut"))


def _fit_panel(ax, profiles: pd.DataFrame, summary: pd.DataFrame) -> None:
    """Points: the mean profile of each run's checkpoints (base in grey); lines: the fits the table holds."""
    runs, faint, base_drawn = [], False, False
    for run, run_rows in by_run(profiles):
        runs.append(run)
        series = checkpoints_in_order(run_rows)
        faint |= len(series) > 1
        for j, (checkpoint, rows) in enumerate(series):
            mean = _mean_profile(rows)
            if not base_drawn:
                ax.plot(mean["ell"], mean["base_entropy"], ls="none", marker="s", ms=5, mfc="none",
                        color=THEORY["page"], label="base model, same windows")
                base_drawn = True
            run_line(ax, mean["ell"], mean["entropy"], run=run, position=j, count=len(series), style="none",
                     marker="o", description=f"{run} · {checkpoint} · profile")
            fit = summary
            if not fit.empty and "run" in fit.columns:
                fit = fit[(fit["run"].astype(str) == run) & (fit["checkpoint"].astype(str) == checkpoint)]
            if fit.empty:
                continue
            row = fit.iloc[0]
            grid = np.linspace(max(float(mean["ell"].min()), 1e-6), float(mean["ell"].max()), 60)
            run_line(ax, grid, row["area_log_a"] + row["area_log_b"] * np.log(grid), run=run, position=j,
                     count=len(series), marker=None, description=f"{run} · {checkpoint} · area-log fit")
            run_line(ax, grid, row["volume_a"] + row["volume_b"] * grid, run=run, position=j, count=len(series),
                     marker=None, style="--", description=f"{run} · {checkpoint} · volume fit")
    run_legend(ax, runs, faint=faint, styles={"S = a + b·ln ℓ (area law, log correction)": "-",
                                              "S = a + b·ℓ (volume law)": "--"}, style_name="fit:")
    ax.set_xlabel("ℓ = ln min(D_left, D_right) (nats)")
    ax.set_ylabel(NATS)


def fit_chart(profiles: pd.DataFrame, summary: pd.DataFrame, *, title: str | None = None) -> Chart:
    """One head's mean attention entropy against ℓ (one L), per run and checkpoint, with both fitted laws."""
    if profiles.empty:
        return empty_chart(title or "Attention profile", "no attention profiles for this selection")
    layer, head, L = (distinct(profiles, c)[:1] for c in ("layer", "head", "seq_len"))
    title = title or f"Attention entropy vs ℓ: layer {layer[0]}, head {head[0]}, L = {L[0]}"
    fig, (ax,) = new_figure()
    _fit_panel(ax, profiles, summary)
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = ("Each point is the entropy at one cut of the head's L×L attention matrix, averaged over the windows; "
               "solid and dashed lines are the least-squares fits the attention_summary table holds. The paper's claim "
               "is that the area law with a log correction (solid) fits better than the volume law (dashed).")
    return Chart(fig, title, caption)


def _no_hair_frames(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    keys = [c for c in ("run", "checkpoint", "step", "layer") if c in summary.columns]
    outside = summary[keys + ["attention_tv"]]
    inside = summary[keys + ["q_rel_change", "v_rel_change"]].drop_duplicates()
    inside = inside.melt(id_vars=keys, value_vars=["q_rel_change", "v_rel_change"], var_name="role",
                         value_name="rel_change")
    inside["role"] = inside["role"].str[0]
    return outside, inside.dropna(subset=["rel_change"])


def no_hair_chart(summary: pd.DataFrame, *, title: str = "No-hair: the attention vs the weights, by layer") -> Chart:
    """Two panels by layer: how far the attention rows moved from the base's (mean total variation over heads,
    windows and L) and how far the layer's W_q and W_v moved (‖ΔW‖_F/‖W‖_F)."""
    summary = summary[summary["layer"].notna()] if "layer" in summary.columns else summary.iloc[0:0]
    if summary.empty:
        return empty_chart(title, "no attention summary rows for this selection")
    outside, inside = _no_hair_frames(summary)
    fig, (left, right) = new_figure(ncols=2, width=4.6)
    layer_lines(outside, [(left, "attention_tv")])
    if not inside.empty:
        layer_lines(inside, [(right, "rel_change")])
    for ax in (left, right):
        ax.set_xlabel("layer")
        integer_ticks(ax)
    left.set_ylabel("½‖P_tuned − P_base‖₁ (0 = unchanged)")
    right.set_ylabel("‖ΔW‖_F / ‖W_base‖_F")
    left.set_title("outside: attention rows moved", fontsize=10)
    right.set_title("inside: the weights moved (q, v)", fontsize=10)
    fig.suptitle(title, fontsize=11)
    legend(fig)
    caption = ("'Different inside, same outside' (arXiv 2601.06788) reads as a small left panel next to a large right "
               "one; runs that differ on the right but not on the left agree in the attention.")
    return Chart(fig, title, caption)


def head_map_chart(summary: pd.DataFrame, column: str = "entropy_diff", *, title: str | None = None) -> Chart:
    """A layer × head map of a no-hair measure (default the relative entropy difference), mean over L."""
    summary = summary[summary["layer"].notna()] if "layer" in summary.columns else summary.iloc[0:0]
    if summary.empty or column not in summary.columns:
        return empty_chart(title or "Layer × head", "no attention summary rows for this selection")
    grid = summary.pivot_table(index="layer", columns="head", values=column, aggfunc="mean").sort_index()
    title = title or f"Layer × head: {column}"
    fig, (ax,) = new_figure(height=max(2.4, 0.35 * len(grid) + 1.6))
    values = grid.to_numpy(dtype=float)
    image = ax.imshow(values, aspect="auto", cmap="magma", interpolation="nearest",
                      extent=(grid.columns.min() - 0.5, grid.columns.max() + 0.5, grid.index.max() + 0.5, grid.index.min() - 0.5))
    ax.grid(False)
    fig.colorbar(image, ax=ax).set_label(column)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    integer_ticks(ax)
    integer_ticks(ax, "y")
    ax.set_title(title, fontsize=10)
    caption = "Where in the model the attention changed: each cell is one head's value, averaged over the window lengths."
    return Chart(fig, title, caption)


def headline_chart(profiles: pd.DataFrame, summary: pd.DataFrame, *, title: str = "Attention: fits and no-hair") -> Chart:
    """Left: one head's mean profile with both fits per run; right: how far the attention moved, by layer."""
    if profiles.empty or summary.empty:
        return empty_chart(title, "no attention rows for these runs")
    fig, (left, right) = new_figure(ncols=2, width=4.6)
    _fit_panel(left, profiles, summary)
    layer, head, L = (distinct(profiles, c)[:1] for c in ("layer", "head", "seq_len"))
    left.set_title(f"entropy vs ℓ: layer {layer[0]}, head {head[0]}, L = {L[0]}", fontsize=10)
    outside, _ = _no_hair_frames(summary[summary["layer"].notna()])
    layer_lines(outside, [(right, "attention_tv")])
    right.set_xlabel("layer")
    integer_ticks(right)
    right.set_ylabel("½‖P_tuned − P_base‖₁ (mean)")
    right.set_title("attention rows moved from the base's", fontsize=10)
    fig.suptitle(title, fontsize=11)
    legend(fig)
    caption = ("Left: points are the windows' mean entropy at each cut of one head's attention matrix, lines the two "
               "fitted laws. Right: the mean total-variation distance between tuned and base attention rows per layer.")
    return Chart(fig, title, caption)
