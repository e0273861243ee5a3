"""Figures of the forgetting probe (what fine-tuning cost the model): KL(p_base ‖ p_tuned) and the loss change
per run and checkpoint on each text set (the run's --texts, and the reference texts: what was forgotten), with
their bootstrap intervals over windows; and per layer the cosine distance of the hidden states from the base's.

Both show one window length per run, the longest it has (most predicted positions per window).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lab.present.colours import checkpoint_alpha, run_colour
from lab.present.figures.common import (Chart, by_run, checkpoints_in_order, empty_chart, integer_ticks, legend,
                                        new_figure, run_legend, run_line)

TEXT_SETS = {"texts": ("o", "-", "--texts (the fine-tuning data)"),
             "reference": ("s", "--", "reference texts (what was forgotten)")}


def longest(rows: pd.DataFrame) -> pd.DataFrame:
    """Each run's rows at its longest window length."""
    if rows.empty or "seq_len" not in rows.columns:
        return rows
    top = rows.groupby("run")["seq_len"].transform("max") if "run" in rows.columns else rows["seq_len"].max()
    return rows[rows["seq_len"] == top]


def kl_chart(rows: pd.DataFrame, *, title: str = "What fine-tuning cost the model: KL and loss change per text set") -> Chart:
    """Left: mean KL(p_base ‖ p_tuned); right: tuned − base loss; per run and checkpoint (training order), one marker
    per text set, with the bootstrap 95 % intervals over windows; each run at its longest L."""
    rows = longest(rows)
    rows = rows[rows["kl"].notna()] if "kl" in rows.columns else rows.iloc[0:0]
    if rows.empty:
        return empty_chart(title, "no KL in this selection (a model without a language-modelling head has none: "
                                  "see the hidden-state distances)")
    fig, (left, right) = new_figure(2, width=4.6, height=3.8)
    ticks, labels, x, runs = [], [], 0, []
    for run, run_rows in by_run(rows):
        runs.append(run)
        series = checkpoints_in_order(run_rows)
        for j, (checkpoint, g) in enumerate(series):
            for k, (text_set, (marker, _, _)) in enumerate(TEXT_SETS.items()):
                r = g[g["text_set"] == text_set]
                if r.empty:
                    continue
                r = r.iloc[0]
                pos = x + (k - 0.5) * 0.3
                for ax, value, lo, hi in ((left, "kl", "kl_lo", "kl_hi"), (right, "loss_change", "loss_change_lo",
                                                                            "loss_change_hi")):
                    err = np.array([[r[value] - r[lo]], [r[hi] - r[value]]], dtype=float)
                    bar = ax.errorbar([pos], [r[value]], yerr=np.clip(err, 0, None), fmt=marker, color=run_colour(run),
                                      alpha=checkpoint_alpha(j, len(series)), ms=5, capsize=3, label="_")
                    for line in (bar.lines[0], *bar.lines[1]):  # the marker and the caps: each says its run
                        line.set_gid(str(run))
            ticks.append(x)
            step = g["step"].dropna().unique() if "step" in g.columns else []
            labels.append(f"{run}\n{checkpoint}" + (f" (step {int(step[0])})" if len(step) == 1 else "")
                          + f"\nL = {int(g['seq_len'].iloc[0])}")
            x += 1
    for ax in (left, right):
        ax.set_xticks(ticks, labels, fontsize=6.5, rotation=30, ha="right")
    right.axhline(0.0, color="#777777", lw=0.8, ls=":")
    left.set_ylabel("KL, nats per position")
    right.set_ylabel("tuned − base loss (nats/token)")
    left.set_title("KL from the base's predictions", fontsize=9)
    right.set_title("loss change (positive: worse than the base)", fontsize=9)
    run_legend(left, runs, faint=any(len(checkpoints_in_order(g)) > 1 for _, g in by_run(rows)))
    for text_set, (marker, _, label) in TEXT_SETS.items():
        left.plot([], [], color="#555555", ls="none", marker=marker, label=label)
    fig.suptitle(title, fontsize=10)
    legend(fig)
    caption = ("Forgetting reads on the reference texts: a KL or a loss rise there is what tuning cost on text it was "
               "not tuned on; on --texts the loss should fall. Bars: bootstrap 95 % intervals over windows, so two "
               "markers differ only where their bars do not overlap.")
    return Chart(fig, title, caption)


def layers_chart(layers: pd.DataFrame, *, title: str = "How far the hidden states moved, per layer") -> Chart:
    """Mean cosine distance 1 − cos(h_base, h_tuned) against the hidden state (0 = embeddings' output, k = block
    k − 1's), per run (colour), text set (line style) and checkpoint (earlier ones faint); the last checkpoint's
    interval shaded; each run at its longest L."""
    layers = longest(layers)
    if layers.empty:
        return empty_chart(title, "no hidden-state distances in this selection")
    fig, (ax,) = new_figure()
    runs, faint = [], False
    for run, run_rows in by_run(layers):
        runs.append(run)
        series = checkpoints_in_order(run_rows)
        faint |= len(series) > 1
        for j, (checkpoint, g) in enumerate(series):
            for text_set, (_, style, _) in TEXT_SETS.items():
                r = g[g["text_set"] == text_set].sort_values("hidden_state")
                if r.empty:
                    continue
                run_line(ax, r["hidden_state"], r["cosine_distance"], run=run, position=j, count=len(series),
                         style=style, description=f"{run} · {checkpoint} · {text_set}")
                if j == len(series) - 1:
                    band = ax.fill_between(r["hidden_state"], r["cosine_distance_lo"], r["cosine_distance_hi"],
                                           color=run_colour(run), alpha=0.12, lw=0)
                    band.set_gid(str(run))
    run_legend(ax, runs, faint=faint, styles={label: style for _, style, label in TEXT_SETS.values()}, style_name="")
    ax.set_xlabel("hidden state (0: embeddings' output; k: after block k − 1)")
    integer_ticks(ax)
    ax.set_ylabel("1 − cos(h_base, h_tuned)")
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = ("Where in depth the tuned model's representations left the base's. A LoRA on attention leaves the "
               "embeddings' output (0) untouched; shaded: the last checkpoint's bootstrap 95 % interval over windows.")
    return Chart(fig, title, caption)
