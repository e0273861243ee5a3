"""Figures of the minimal-semantic-unit probes and of merges (LoRA-LEGO, arXiv 2409.16167; FLoRA):
how the energy of an adapter is shared among its units, the effective number of units by layer, the
cross-term error of index-wise averaging with its spread over rank permutations, and the errors of
merge methods against the Eckart–Young floor at the same rank k.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lab.present.figures.common import (
    THEORY, Chart, by_run, checkpoints_in_order, empty_chart, integer_ticks, layer_lines, legend,
    new_figure, run_legend, run_line,
)


def shares_chart(units: pd.DataFrame, *, title: str = "How the update is shared among its units") -> Chart:
    """Mean over modules of each unit's own share c_i²/Σc² (solid) and Gram-weighted share (dashed),
    units ordered by contribution, with the equal share 1/r for reference."""
    if units.empty:
        return empty_chart(title, "no units for this selection")
    fig, (ax,) = new_figure()
    runs, faint = [], False
    for run, run_rows in by_run(units):
        runs.append(run)
        series = checkpoints_in_order(run_rows)
        faint |= len(series) > 1
        for j, (checkpoint, g) in enumerate(series):
            g = g.groupby("order", as_index=False)[["own_share", "energy_share"]].mean().sort_values("order")
            run_line(ax, g["order"], g["own_share"], run=run, position=j, count=len(series),
                     description=f"{run} · {checkpoint} · own share")
            run_line(ax, g["order"], g["energy_share"], run=run, position=j, count=len(series), style="--",
                     description=f"{run} · {checkpoint} · energy share")
    for r in sorted(units.groupby(["run", "checkpoint", "module"])["order"].max().unique()) if "module" in units.columns else []:
        ax.plot([1, r], [1.0 / r, 1.0 / r], color=THEORY["page"], ls=":", lw=1)
    ax.plot([], [], color=THEORY["page"], ls=":", label="1/r: every unit equal")
    run_legend(ax, runs, faint=faint, styles={"own share c_i²/Σc²": "-", "Gram-weighted ⟨U_i, ΔW⟩/‖ΔW‖²": "--"},
               style_name="")
    ax.set_xlabel("unit, ordered by contribution (1 = largest)")
    integer_ticks(ax)
    ax.set_ylabel("share of ‖ΔW‖_F² (mean over modules)")
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = ("A flat curve at 1/r means every rank carries the same energy (effective number of units ≈ r); a steep "
               "one means a few units dominate. Solid and dashed differ by the cross terms between units.")
    return Chart(fig, title, caption)


def contributions_chart(units: pd.DataFrame, *, title: str | None = None) -> Chart:
    """One module's units: each unit's contribution c_i = ‖U_i‖_F against its order, per run and checkpoint."""
    if units.empty:
        return empty_chart(title or "Unit contributions", "no units for this selection")
    module = ", ".join(sorted(units["module"].dropna().unique())[:2]) if "module" in units.columns else ""
    title = title or f"Unit contributions: {module}"
    fig, (ax,) = new_figure()
    runs, faint = [], False
    for run, run_rows in by_run(units):
        runs.append(run)
        series = checkpoints_in_order(run_rows)
        faint |= len(series) > 1
        for j, (checkpoint, g) in enumerate(series):
            g = g.groupby("order", as_index=False)["contribution"].mean().sort_values("order")
            run_line(ax, g["order"], g["contribution"], run=run, position=j, count=len(series),
                     description=f"{run} · {checkpoint} · contribution")
    run_legend(ax, runs, faint=faint)
    ax.set_xlabel("unit, ordered by contribution (1 = largest)")
    integer_ticks(ax)
    ax.set_ylabel("c_i = ‖s·b_i·a_iᵀ‖_F (weight units)")
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = "The size of each rank-one unit of the update; the sum of their squares exceeds ‖ΔW‖_F² by the cross terms."
    return Chart(fig, title, caption)


SIMILARITY = ("cos_a_max", "cos_a_mean", "cos_b_max", "cos_b_mean")


def similarity_chart(msu: pd.DataFrame, *, title: str = "How alike the units are, per module") -> Chart:
    """A module × measure map of the largest and mean |cos| between the units' a_i's and b_i's (0 = orthogonal)."""
    cols = [c for c in SIMILARITY if c in msu.columns]
    msu = msu.dropna(subset=cols) if cols else msu.iloc[0:0]
    if msu.empty:
        return empty_chart(title, "no adapter modules in this selection")
    label = msu["module"].str.replace("model.", "", regex=False).str.replace("layers.", "L", regex=False)
    if "run" in msu.columns and msu["run"].nunique() > 1 or "checkpoint" in msu.columns and msu["checkpoint"].nunique() > 1:
        label = msu["run"].astype(str) + " · " + msu["checkpoint"].astype(str) + " · " + label
    grid = msu.assign(label=label).groupby("label", sort=False)[cols].mean()
    fig, (ax,) = new_figure(height=max(2.4, 0.28 * len(grid) + 1.6))
    image = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.grid(False)
    fig.colorbar(image, ax=ax).set_label("|cos| (0 = orthogonal, 1 = parallel)")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(["max |cos| a", "mean |cos| a", "max |cos| b", "mean |cos| b"][:len(cols)], fontsize=8)
    ax.set_yticks(range(len(grid)))
    ax.set_yticklabels(grid.index, fontsize=6.5)
    ax.set_title(title, fontsize=10)
    caption = ("Units whose a_i's (rows of A) or b_i's (columns of B) point the same way are redundant: bright cells "
               "mean similar units, which a LEGO merge would cluster together.")
    return Chart(fig, title, caption)


def unit_similarity_matrix(pairs: pd.DataFrame) -> "np.ndarray":
    """r × r matrix of one module's ``msu_similarity`` rows: |cos(a_i, a_j)| below the diagonal,
    |cos(b_i, b_j)| above it, 1 on it (NaN where a unit is zero)."""
    import numpy as np

    r = int(max(pairs["unit_i"].max(), pairs["unit_j"].max())) + 1 if not pairs.empty else 0
    m = np.eye(r)
    i, j = pairs["unit_i"].to_numpy(dtype=int), pairs["unit_j"].to_numpy(dtype=int)
    m[j, i] = np.abs(pairs["cos_a"].to_numpy(dtype=float))
    m[i, j] = np.abs(pairs["cos_b"].to_numpy(dtype=float))
    return m


def unit_similarity_heatmap(pairs: pd.DataFrame, *, title: str | None = None) -> Chart:
    """One module of one checkpoint: |cos| between every two units, a's below the diagonal, b's above."""
    if pairs.empty:
        return empty_chart(title or "Unit × unit similarity", "no unit pairs for this selection (the msu probe's msu_similarity table)")
    module = pairs["module"].iloc[0] if "module" in pairs.columns else ""
    title = title or f"Unit × unit similarity: {module}"
    m = unit_similarity_matrix(pairs)
    fig, (ax,) = new_figure(width=5.2, height=4.4)
    image = ax.imshow(m, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.grid(False)
    fig.colorbar(image, ax=ax).set_label("|cos| (0 = orthogonal, 1 = parallel)")
    ax.set_xlabel("unit j (rank index as stored)")
    ax.set_ylabel("unit i")
    ax.set_title(title, fontsize=10)
    caption = ("Below the diagonal |cos(a_i, a_j)| between rows of A, above it |cos(b_i, b_j)| between columns of B. "
               "Random factors of dimension n give |cos| ~ 1/√n; a bright pair is two ranks doing the same thing.")
    return Chart(fig, title, caption)


def effective_chart(msu: pd.DataFrame, *, title: str = "Effective number of units by layer") -> Chart:
    """exp(H(own shares)) by layer, one line style per role, with each rank r dashed grey."""
    msu = msu[msu["layer"].notna() & msu["rank"].notna()] if {"layer", "rank"} <= set(msu.columns) else msu.iloc[0:0]
    if msu.empty:
        return empty_chart(title, "no per-layer adapter modules in this selection")
    fig, (ax,) = new_figure()
    layer_lines(msu, [(ax, "effective_units")])
    for r in sorted(msu["rank"].unique()):
        ax.axhline(float(r), color=THEORY["page"], ls="--", lw=1, alpha=0.6)
    ax.plot([], [], color=THEORY["page"], ls="--", label="rank r (dashed)")
    ax.set_xlabel("layer")
    integer_ticks(ax)
    ax.set_ylabel("effective units exp H(c_i²/Σc²)")
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = "Between 1 (one unit carries the update) and r (all units equal); the dashed line is the adapter's rank."
    return Chart(fig, title, caption)


def pairs_chart(pairs: pd.DataFrame, *, title: str = "Index-wise averaging vs the exact mean, per module") -> Chart:
    """Per module: the relative error of PEFT's linear average (mean over rank permutations, with the
    range as a vertical bar) and of FedAvg's, against the exact mean of the updates."""
    pairs = pairs.dropna(subset=["cross_term_error"]) if "cross_term_error" in pairs.columns else pairs.iloc[0:0]
    if pairs.empty:
        return empty_chart(title, "no module with equal ranks in every adapter (no index-wise average)")
    fig, (ax,) = new_figure()
    modules = sorted(pairs["module"].unique(), key=lambda m: (len(m), m))
    position = {m: i for i, m in enumerate(modules)}
    runs = []
    for run, g in by_run(pairs):
        runs.append(run)
        g = g.assign(x=g["module"].map(position)).sort_values("x")
        run_line(ax, g["x"], g["cross_term_error_mean"], run=run, description=f"{run} · linear (mean over permutations)")
        for x, lo, hi in zip(g["x"], g["cross_term_error_min"], g["cross_term_error_max"]):
            run_line(ax, [x, x], [lo, hi], run=run, marker="_", lw=2.5, description=f"{run} · linear range")
        run_line(ax, g["x"], g["fedavg_error_mean"], run=run, style="--", marker="s",
                 description=f"{run} · FedAvg (mean over permutations)")
    run_legend(ax, runs, styles={"PEFT linear (bar: min–max over rank permutations)": "-", "FedAvg": "--"}, style_name="")
    ax.axhline(0.0, color=THEORY["page"], lw=1, label="stacking (concatenation): exact, 0")
    ax.set_xticks(range(len(modules)))
    ax.set_xticklabels([m.replace("model.", "").replace("layers.", "L") for m in modules], rotation=60, ha="right",
                       fontsize=6.5)
    ax.set_ylabel("‖merged − exact mean‖_F / ‖exact mean‖_F")
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = ("Averaging the factors index by index adds cross terms B_j·A_k; how large they are depends on the arbitrary "
               "order of ranks (the bars). Concatenating the units is exact (the grey line at 0).")
    return Chart(fig, title, caption)


def merge_chart(merge: pd.DataFrame, *, title: str = "Merge error against rank k, per method") -> Chart:
    """Mean relative error over modules of each merged adapter against its rank k, one marker per method,
    with the Eckart–Young floor (the best rank-k error) in red."""
    if merge.empty:
        return empty_chart(title, "no merges in this selection")
    fig, (ax,) = new_figure()
    methods = sorted(merge["method"].dropna().unique())
    markers = {m: ["o", "s", "^", "D", "v"][i % 5] for i, m in enumerate(methods)}
    runs = []
    for run, run_rows in by_run(merge):
        runs.append(run)
        per = (run_rows.groupby(["method", "checkpoint"], as_index=False)
                       .agg(k=("k", "max"), error=("rel_fro_error", "mean")))
        for method, g in per.groupby("method", sort=True):
            g = g.sort_values("k")
            run_line(ax, g["k"], g["error"], run=run, marker=markers[method], style="-" if len(g) > 1 else "none",
                     ms=7, description=f"{run} · {method}")
    floor = merge.groupby("k", as_index=False)["optimal_rel_fro_error"].mean().sort_values("k")
    ax.plot(floor["k"], floor["optimal_rel_fro_error"], color=THEORY["rank"], ls="--", marker="x", ms=7,
            label="best rank-k error (Eckart–Young floor)")
    run_legend(ax, runs, markers=markers, marker_name="method")
    ax.set_xlabel("rank k of the merged adapter")
    integer_ticks(ax)
    ax.set_ylabel("‖M − T‖_F / ‖T‖_F (mean over modules)")
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = ("T is the exact weighted sum of the adapters' updates. No merge of rank k can go below the red floor; "
               "stack reaches 0 at k = the pooled rank, linear pays the cross terms at the inputs' rank.")
    return Chart(fig, title, caption)



def merge_eval_chart(rows: pd.DataFrame, *, title: str = "Held-out loss per text set: merges, their inputs, the base") -> Chart:
    """One panel: per text set (x), the loss of every merged adapter (filled markers, one per method), of every
    input adapter (open circles) and of the base (a grey bar), from the merge_eval table."""
    if rows.empty:
        return empty_chart(title, "no merge evaluations in this selection (lab merge --eval-texts)")
    fig, (ax,) = new_figure()
    sets = sorted(rows["texts"].unique())
    merged = rows[rows["kind"] == "merged"]
    methods = sorted(merged["method"].dropna().unique())
    markers = {m: ["o", "s", "^", "D", "v"][i % 5] for i, m in enumerate(methods)}
    width = 0.8
    for x, texts in enumerate(sets):
        g = rows[rows["texts"] == texts]
        base = g[g["kind"] == "base"]["loss"]
        if not base.empty:
            ax.bar(x, base.mean(), width=width, color="0.85", label="base" if x == 0 else None)
        inputs = g[g["kind"] == "input"].drop_duplicates(["run", "checkpoint"])
        ax.plot(np.full(len(inputs), x - width / 4), inputs["loss"], "o", mfc="none", color="black",
                label="input adapters" if x == 0 else None)
        for i, (method, m) in enumerate(g[g["kind"] == "merged"].groupby("method", sort=True)):
            ax.plot(np.full(len(m), x + width / 4 * (i - len(methods) / 2) / max(len(methods), 1)), m["loss"],
                    markers[method], ms=7, label=method if x == 0 else None)
    ax.set_xticks(range(len(sets)), sets)
    lo, hi = rows["loss"].min(), rows["loss"].max()
    pad = 0.15 * (hi - lo) if hi > lo else 0.05 * abs(hi) + 1e-3
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("held-out text set (--eval-texts)")
    ax.set_ylabel(f"loss ({', '.join(sorted(rows['objective'].dropna().unique()))})")
    ax.set_title(title, fontsize=10)
    legend(fig)
    caption = ("Lower is better. A merge keeps a task when its loss on that task's texts is near the adapter trained "
               "on them (open circles) and below the base (grey). One lab merge run has no seeds: see "
               "analyses/msu_merge.md for the spread over fine-tuning seeds.")
    return Chart(fig, title, caption)
