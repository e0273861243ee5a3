"""Figures of the no-hair probe (arXiv 2601.06788's claim posed on pairs of fine-tunes): each pair's
outside distance beside both members' distances from the base, with the bootstrap 95 % intervals
over windows, per layer; and inside against outside per pair and layer.
"""

from __future__ import annotations

import pandas as pd

from lab.present import no_hair
from lab.present.figures.common import Chart, empty_chart, legend, new_figure, run_legend

LABELS = {"token_cuts": "token-cut profile, mean |S_a − S_b| / S_base",
          "digit_chain": "digit-chain profile, mean |S_a − S_b| / S_base",
          "rows": "attention rows, mean ½‖P_a − P_b‖₁",
          "head_outputs": "head outputs, mean ‖O_a − O_b‖_F / ‖O_base‖_F",
          "layer_output": "layer output after W_O, ‖Y_a − Y_b‖_F / ‖Y_base‖_F"}
# a–b in the run's colour; each member's distance from the base in a grey (theory-like, outside the run palette)
SERIES = (("distance", "a vs b", "o", None), ("first_base", "a vs base", "^", "#444444"),
          ("second_base", "b vs base", "v", "#999999"))
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*", "h", "<", ">")


def distances_chart(rows: pd.DataFrame, measure: str = "layer_output", seq_len: int | None = None, *,
                    title: str | None = None) -> Chart:
    """Per pair (x groups) and layer (within a group): the a–b distance (in the run's colour) and a's and
    b's distance from the base (greys), each with its interval, at one window length (the longest
    when not given)."""
    from lab.present.colours import run_colour

    title = title or f"No-hair, outside: {measure}"
    t = rows[rows["measure"] == measure] if not rows.empty else rows
    if t.empty:
        return empty_chart(title, f"no {measure} rows for this selection")
    t = no_hair.with_verdicts(t)
    L = int(seq_len if seq_len is not None else t["seq_len"].max())
    t = t[t["seq_len"] == L]
    groups = list(dict.fromkeys(zip(t["run"].astype(str), t["pair"])))
    fig, (ax,) = new_figure(width=max(6.4, 1.3 * len(groups) + 2.5))
    layers = sorted(t["layer"].dropna().unique())
    span = 0.7 / max(len(layers), 1)
    for k, (run, pair) in enumerate(groups):
        r = t[(t["run"].astype(str) == run) & (t["pair"] == pair)].sort_values("layer")
        x = k - 0.35 + span * (r["layer"].map({ly: i for i, ly in enumerate(layers)}).to_numpy() + 0.5)
        for j, (col, label, marker, grey) in enumerate(SERIES):
            y = r[col].to_numpy()
            bars = ax.errorbar(x + (j - 1) * span * 0.25, y, yerr=[y - r[f"{col}_lo"].to_numpy(),
                                                                    r[f"{col}_hi"].to_numpy() - y],
                               fmt=marker, ms=3.5, lw=0.9, color=grey or run_colour(run), label="_" + label)
            if grey is None:
                for line in [bars.lines[0], *bars.lines[1]]:
                    line.set_gid(run)
    run_legend(ax, list(dict.fromkeys(run for run, _ in groups)))
    for _, label, marker, grey in SERIES:
        ax.plot([], [], ls="none", marker=marker, color=grey or "#555555", label=label)
    ax.set_xticks(range(len(groups)))
    several = len({run for run, _ in groups}) > 1
    ax.set_xticklabels([f"{run}: {pair}" if several else pair for run, pair in groups], rotation=20, ha="right",
                       fontsize=7.5)
    ax.set_ylabel(LABELS.get(measure, measure), fontsize=8)
    ax.set_title(f"{title} (L = {L}; layers left to right within each pair)", fontsize=10)
    legend(fig)
    caption = ("Bars are bootstrap 95 % intervals over windows. Where the a–b interval (run colour) lies below both "
               "grey ones, the attention tells the two fine-tunes apart less than it tells each from the base; "
               "overlapping intervals are not separated, whatever the means.")
    return Chart(fig, title, caption)


def inside_outside_chart(rows: pd.DataFrame, measure: str = "layer_output", *, title: str | None = None) -> Chart:
    """Per pair (marker) and layer (point): the inside distance (ΔW profiles) against the outside one
    (mean over lengths), in the run's colour."""
    from lab.present.colours import run_colour

    title = title or f"No-hair: inside against outside ({measure})"
    t = rows[rows["measure"] == measure] if not rows.empty else rows
    if t.empty or t["inside"].notna().sum() == 0:
        return empty_chart(title, "no pair with both an inside and an outside distance in this selection")
    t = no_hair.with_verdicts(t)
    fig, (ax,) = new_figure()
    pairs = list(dict.fromkeys(t["pair"]))
    for (run, pair), g in t.groupby([t["run"].astype(str), "pair"], sort=False):
        g = g.groupby("layer", as_index=False)[["inside", "distance"]].mean()
        (line,) = ax.plot(g["inside"], g["distance"], ls="none", marker=MARKERS[pairs.index(pair) % len(MARKERS)],
                          ms=5, color=run_colour(run), label=f"_{run} · pair {pairs.index(pair) + 1}")
        line.set_gid(run)
    run_legend(ax, sorted(set(t["run"].astype(str))))
    for pair in pairs:
        ax.plot([], [], ls="none", marker=MARKERS[pairs.index(pair) % len(MARKERS)], color="#555555", label=pair)
    ax.set_xlabel("inside: mean over cuts |S_a(ΔW) − S_b(ΔW)| / S_Page (q, v)", fontsize=8)
    ax.set_ylabel(LABELS.get(measure, measure), fontsize=8)
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = ("One point per pair and layer. The no-hair ratio is the slope from the origin: outside / inside. "
               "Inside has no interval (the weights are not sampled); read the outside intervals on the chart beside it.")
    return Chart(fig, title, caption)
