"""Figures of the rank-spectra probe: singular values on a log scale, effective and stable rank
by layer, and the ranks that hold 90 % and 99 % of the energy.

Definitions (DESIGN.md, "Rank spectra"): stable rank ‖ΔW‖_F²/‖ΔW‖_2²; effective rank exp(H(σ/Σσ))
(Roy & Vetterli, EUSIPCO 2007); energy rank k_p = smallest k with Σ_{i≤k} σ_i² ≥ p·Σ σ_i².
"""

from __future__ import annotations

import pandas as pd

from lab.present.figures.common import (
    THEORY, Chart, by_run, checkpoints_in_order, empty_chart, integer_ticks, layer_lines, legend, log_if_wide,
    new_figure, run_legend, run_line, styles_for,
)
from lab.present.frames import distinct, measured, with_layer

# Columns of the long singular_values table: the 1-based position of σ (named "index", earlier "k")
# and its value.
SV_INDEX = ("index", "k")
SV_VALUE = "sigma"
MARKERS = ["o", "s", "^", "D", "v"]  # roles in the energy chart, where line styles say 99 % / 90 %


def _position_column(sv: pd.DataFrame) -> str:
    found = [c for c in SV_INDEX if c in sv.columns]
    if not found:
        raise KeyError(f"singular_values has none of the position columns {SV_INDEX}")
    return found[0]


def sigma_chart(sv: pd.DataFrame, *, title: str | None = None, max_series: int = 12) -> Chart:
    """Singular values σ_i of each selected module against i, on a log scale (controls left out)."""
    sv = measured(sv)
    if sv.empty:
        return empty_chart(title or "Singular values", "no singular values for this selection")
    title = title or "Singular values: " + ", ".join(distinct(sv, "module")[:3])
    position = _position_column(sv)
    fig, (ax,) = new_figure()
    style_key, styles = styles_for(sv, ("role", "module", "source"))
    runs, faint, drawn = [], False, 0
    for run, run_rows in by_run(sv):
        runs.append(run)
        series = checkpoints_in_order(run_rows)
        faint |= len(series) > 1
        for j, (checkpoint, by_checkpoint) in enumerate(series):
            for value, g in (by_checkpoint.groupby(style_key, sort=True) if style_key else [(None, by_checkpoint)]):
                for module, m in g.groupby("module", sort=True) if "module" in g.columns else [("", g)]:
                    if drawn >= max_series:
                        break
                    m = m.sort_values(position)
                    values = m[SV_VALUE].where(m[SV_VALUE] > 0)  # log axis: zeros are not drawable, drop them
                    run_line(ax, m[position], values, run=run, position=j, count=len(series), marker=".",
                             style=styles.get(value, "-"), lw=1.2 if j < len(series) - 1 else 1.6,
                             description=" · ".join(str(p) for p in (run, checkpoint, module) if p not in (None, "")))
                    drawn += 1
    run_legend(ax, runs, faint=faint, styles=styles, style_name=style_key or "")
    ax.set_yscale("log")
    ax.set_xlabel("index i (largest first)")
    ax.set_ylabel("singular value σ_i (weight units, log scale)")
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = ("An adapter of rank r has at most r non-zero singular values (its line stops at i = r); a full "
               "fine-tune spreads over every index. A steep drop means a few directions carry the update.")
    return Chart(fig, title, caption)


def ranks_chart(spectra: pd.DataFrame, *, title: str = "Effective and stable rank by layer") -> Chart:
    """Effective rank (Roy & Vetterli) and stable rank by layer, one line per role, with the rank bound dashed."""
    spectra = measured(with_layer(spectra))
    if spectra.empty:
        return empty_chart(title, "no per-layer modules in this selection")
    fig, (left, right) = new_figure(ncols=2, width=4.6)
    layer_lines(spectra, [(left, "effective_rank"), (right, "stable_rank")])
    if "rank_bound" in spectra.columns:  # one line per distinct bound, not per series
        for r in sorted(spectra["rank_bound"].dropna().unique()):
            left.axhline(float(r), color=THEORY["page"], ls="--", lw=1, alpha=0.6)
    left.plot([], [], ls="--", color=THEORY["page"], label="rank bound r (dashed)")
    log_if_wide(left, pd.concat([spectra["effective_rank"], spectra.get("rank_bound", pd.Series(dtype=float))]))
    log_if_wide(right, spectra["stable_rank"])
    for ax in (left, right):
        ax.set_xlabel("layer")
        integer_ticks(ax)
    left.set_ylabel("effective rank (directions)")
    right.set_ylabel("stable rank (directions)")
    left.set_title("effective rank exp H(σ/Σσ)", fontsize=10)
    right.set_title("stable rank ‖ΔW‖_F²/‖ΔW‖_2²", fontsize=10)
    fig.suptitle(title, fontsize=11)
    legend(fig)
    caption = ("How many directions each update really uses: close to the dashed bound = the rank is used; far below = "
               "a few directions dominate. Stable rank ≤ effective rank ≤ rank.")
    return Chart(fig, title, caption)


def energy_chart(spectra: pd.DataFrame, *, title: str = "Energy ranks by layer") -> Chart:
    """The ranks holding 90 % and 99 % of ‖ΔW‖_F² by layer: post-hoc targets for compressing the update."""
    spectra = measured(with_layer(spectra))
    if spectra.empty:
        return empty_chart(title, "no per-layer modules in this selection")
    fig, (ax,) = new_figure()
    role_key = "role" if "role" in spectra.columns and spectra["role"].nunique() > 1 else None
    roles = sorted(spectra[role_key].dropna().unique()) if role_key else []
    markers = {r: MARKERS[i % len(MARKERS)] for i, r in enumerate(roles)}
    runs, faint = [], False
    for run, run_rows in by_run(spectra):
        runs.append(run)
        series = checkpoints_in_order(run_rows)
        faint |= len(series) > 1
        for j, (checkpoint, by_checkpoint) in enumerate(series):
            for role, g in (by_checkpoint.groupby(role_key, sort=True) if role_key else [(None, by_checkpoint)]):
                g = g.groupby("layer", as_index=False).mean(numeric_only=True).sort_values("layer")
                label = " · ".join(str(p) for p in (run, checkpoint, role) if p not in (None, ""))
                marker = markers.get(role, "o")
                run_line(ax, g["layer"], g["energy_rank_99"], run=run, position=j, count=len(series), marker=marker,
                         description=f"99 % · {label}")
                run_line(ax, g["layer"], g["energy_rank_90"], run=run, position=j, count=len(series), marker=marker,
                         style=":", description=f"90 % · {label}")
    if "rank_bound" in spectra.columns:  # one line per distinct bound, in the theory colour
        for r in sorted(spectra["rank_bound"].dropna().unique()):
            ax.axhline(float(r), color=THEORY["page"], ls="--", lw=1, alpha=0.6)
    run_legend(ax, runs, faint=faint, styles={"99 %": "-", "90 %": ":"}, style_name="energy", markers=markers)
    ax.plot([], [], ls="--", color=THEORY["page"], label="rank bound r (dashed)")
    log_if_wide(ax, pd.concat([spectra["energy_rank_99"], spectra["energy_rank_90"], spectra.get("rank_bound", pd.Series(dtype=float))]))
    ax.set_xlabel("layer")
    integer_ticks(ax)
    ax.set_ylabel("rank k holding p of ‖ΔW‖_F² (directions)")
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = "The smallest rank that keeps 90 % / 99 % of the update's energy: how far the update could be squeezed."
    return Chart(fig, title, caption)
