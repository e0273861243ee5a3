"""Figures of the attention probe: a head's token-cut profile S(ℓ) against ℓ in tokens with Cardy's
chord fit and its c, a layer × head map of c, the digit-chain profile (no fit), the no-hair comparison
by layer (how far the attention moved beside how far W_q and W_v moved), and a layer × head map of
any per-head column.

Definitions (lab.store.schema, attention_token_cuts and attention_token_fits): the cross block of a cut
after ℓ tokens, its entropy S(ℓ); Cardy's chord S = a + (c/3)·ln((L/π)·sin(πℓ/L)), the volume law
S = a + b·min(ℓ, L−ℓ) and a constant fitted over ℓ to the windows' mean profile (arXiv 2601.06788's
"attention Cardy formula", as issue 21 poses it); the digit chain's cut splits index digits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lab.present.figures.common import (
    NATS, THEORY, Chart, by_run, checkpoints_in_order, empty_chart, integer_ticks, layer_lines, legend, new_figure,
    run_legend, run_line,
)
from lab.present.frames import distinct


def _chord_log(ell, L: int) -> np.ndarray:
    return np.log((L / np.pi) * np.sin(np.pi * np.asarray(ell, np.float64) / L))


def _mean_profile(rows: pd.DataFrame, x: str = "max_entropy") -> pd.DataFrame:
    """Mean over windows of the tuned and the base entropy per cut; ``x``: the digit chain's ℓ column, or "cut"."""
    agg = dict(entropy=("entropy", "mean"), base_entropy=("base_entropy", "mean"))
    if x != "cut":
        agg["ell"] = (x, "first")
    mean = rows.groupby("cut", as_index=False).agg(**agg).sort_values("cut")
    if x == "cut":
        mean["ell"] = mean["cut"].astype(float)
    return mean


def _fit_row(fits: pd.DataFrame, run: str, checkpoint: str) -> pd.Series | None:
    if fits.empty:
        return None
    mine = fits
    if "run" in fits.columns:
        mine = fits[(fits["run"].astype(str) == run) & (fits["checkpoint"].astype(str) == checkpoint)]
    return None if mine.empty else mine.iloc[0]


def _token_panel(ax, cuts: pd.DataFrame, fits: pd.DataFrame) -> list[str]:
    """Points: each run's checkpoints' mean S(ℓ) (base in grey); lines: the Cardy fits the table holds.
    Returns one note per drawn fit (c, R², verdict) for the caption."""
    runs, faint, base_drawn, notes = [], False, False, []
    L = int(distinct(cuts, "seq_len")[0])
    for run, run_rows in by_run(cuts):
        runs.append(run)
        series = checkpoints_in_order(run_rows)
        faint |= len(series) > 1
        for j, (checkpoint, rows) in enumerate(series):
            mean = _mean_profile(rows, "cut")
            if not base_drawn:
                ax.plot(mean["ell"], mean["base_entropy"], ls="none", marker="s", ms=4, mfc="none",
                        color=THEORY["page"], label="base model, same windows")
                base_drawn = True
            run_line(ax, mean["ell"], mean["entropy"], run=run, position=j, count=len(series), style="none",
                     marker="o", description=f"{run} · {checkpoint} · profile")
            row = _fit_row(fits, run, checkpoint)
            if row is None or not np.isfinite(row["cardy_c"]):
                continue
            grid = np.linspace(1.0, L - 1.0, 120)
            run_line(ax, grid, row["cardy_a"] + row["cardy_c"] / 3 * _chord_log(grid, L), run=run, position=j,
                     count=len(series), marker=None, description=f"{run} · {checkpoint} · Cardy fit")
            notes.append(f"{run} · {checkpoint}: c = {row['cardy_c']:.3g}, R² = {row['cardy_r2']:.2f}, "
                         f"verdict {row['verdict']}")
    run_legend(ax, runs, faint=faint, styles={"S = a + (c/3)·ln((L/π)·sin(πℓ/L))": "-"}, style_name="Cardy fit:")
    ax.set_xlabel("ℓ: tokens before the cut")
    ax.set_ylabel(NATS)
    return notes


def token_profile_chart(cuts: pd.DataFrame, fits: pd.DataFrame, *, title: str | None = None) -> Chart:
    """One head's token-cut entropy S(ℓ) against ℓ (one L, one block), per run and checkpoint, with the Cardy fit."""
    if cuts.empty:
        return empty_chart(title or "Token-cut profile", "no token-cut rows for this selection")
    layer, head, L, block = (distinct(cuts, c)[:1] for c in ("layer", "head", "seq_len", "block"))
    title = title or f"Token cuts: layer {layer[0]}, head {head[0]}, L = {L[0]}, {block[0]}"
    fig, (ax,) = new_figure()
    notes = _token_panel(ax, cuts, fits)
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = ("Each point is the entropy of the cross block at a cut after ℓ tokens, averaged over the windows (grey "
               "squares: the base); lines are Cardy's chord fitted over ℓ (attention_token_fits). "
               + ("; ".join(notes) + ". " if notes else "")
               + "A verdict needs the law's AIC lower by more than 2 and R² ≥ 0.8, else 'neither fits'.")
    return Chart(fig, title, caption)


def cardy_map_chart(fits: pd.DataFrame, *, title: str | None = None) -> Chart:
    """A layer × head map of Cardy's c (mean over the lengths L of the rows given), R² beside it in the caption."""
    fits = fits[fits["layer"].notna()] if "layer" in fits.columns else fits.iloc[0:0]
    if fits.empty:
        return empty_chart(title or "Layer × head: Cardy's c", "no token-cut fits for this selection")
    chart = head_map_chart(fits, "cardy_c", title=title or "Layer × head: Cardy's c of the token-cut profile")
    fitting = int((fits["verdict"] == "cardy").sum())
    chart.caption = (f"c of S = a + (c/3)·ln((L/π)·sin(πℓ/L)) per head, averaged over L; median R² "
                     f"{fits['cardy_r2'].median():.2f}, and {fitting} of {len(fits)} (head, L) profiles have the "
                     "verdict 'cardy' (AIC margin > 2, R² ≥ 0.8): read c only where the law fits.")
    return chart


def digit_chain_chart(profiles: pd.DataFrame, *, title: str | None = None) -> Chart:
    """One head's digit-chain entropy (attention_entanglement) against ℓ = ln min(D_left, D_right), per run and
    checkpoint, beside the base; no law is fitted to it."""
    if profiles.empty:
        return empty_chart(title or "Digit-chain profile", "no digit-chain profiles for this selection")
    layer, head, L = (distinct(profiles, c)[:1] for c in ("layer", "head", "seq_len"))
    title = title or f"Digit chain: layer {layer[0]}, head {head[0]}, L = {L[0]}"
    fig, (ax,) = new_figure()
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
    run_legend(ax, runs, faint=faint)
    ax.set_xlabel("ℓ = ln min(D_left, D_right) (nats)")
    ax.set_ylabel(NATS)
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = ("The internal probe applied to P: a cut splits high from low digits of the query and key indices, not "
               "blocks of tokens, so this profile says nothing about an area law over tokens (see the token cuts).")
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


def headline_chart(cuts: pd.DataFrame, fits: pd.DataFrame, summary: pd.DataFrame, *,
                   title: str = "Attention: token cuts and no-hair") -> Chart:
    """Left: one head's token-cut profile with the Cardy fit per run; right: how far the attention moved, by layer."""
    if cuts.empty or summary.empty:
        return empty_chart(title, "no attention rows for these runs")
    fig, (left, right) = new_figure(ncols=2, width=4.6)
    notes = _token_panel(left, cuts, fits)
    layer, head, L, block = (distinct(cuts, c)[:1] for c in ("layer", "head", "seq_len", "block"))
    left.set_title(f"S(ℓ): layer {layer[0]}, head {head[0]}, L = {L[0]}, {block[0]}", fontsize=10)
    outside, _ = _no_hair_frames(summary[summary["layer"].notna()])
    layer_lines(outside, [(right, "attention_tv")])
    right.set_xlabel("layer")
    integer_ticks(right)
    right.set_ylabel("½‖P_tuned − P_base‖₁ (mean)")
    right.set_title("attention rows moved from the base's", fontsize=10)
    fig.suptitle(title, fontsize=11)
    legend(fig)
    caption = ("Left: points are the windows' mean entropy of one head's cross block at each token cut, lines Cardy's "
               "chord fitted over ℓ" + (" (" + "; ".join(notes) + ")" if notes else "") + ". Right: the mean "
               "total-variation distance between tuned and base attention rows per layer.")
    return Chart(fig, title, caption)
