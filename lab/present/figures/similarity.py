"""Figures of the adapter_similarity probe (the geometry between updates of one module across adapters or
checkpoints): member × member maps of a pair measure (the cosine between the updates as vectors, the Grassmann
distance, the sign-conflict rate), per layer (how the update turns during training) or averaged over every module
(how alike several adapters are: the question before a merge), and LoRA's φ(i, j) grid of one pair.

Members are the ``first``/``second`` names of the rows; :func:`lab.present.similarity.member_steps` reads their
training steps from the deltas table so that checkpoints are drawn in training order.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lab.present.figures.common import Chart, empty_chart
from lab.present.similarity import compared, matrix, members

MEASURES = {  # colour-bar label and colour map
    "cosine": ("cos(ΔW_a, ΔW_b)", "RdBu_r"),
    "grassmann_left": ("Grassmann distance, left (radians)", "viridis_r"),
    "grassmann_right": ("Grassmann distance, right (radians)", "viridis_r"),
    "sign_conflict": ("sign-conflict rate (0.5: independent signs)", "PuOr_r"),
}
READING = {  # what a cell's value means, for the captions
    "cosine": "the cosine between the updates as vectors (1 = the same direction, 0 = orthogonal, as two independent "
              "random m×n updates nearly are: about ±1/√(m·n))",
    "grassmann_left": "the Grassmann distance √Σθ² of the top-k left singular subspaces (0 = the same subspace, k·π/2 "
                      "orthogonal)",
    "grassmann_right": "the Grassmann distance √Σθ² of the top-k right singular subspaces (0 = the same subspace, k·π/2 "
                       "orthogonal)",
    "sign_conflict": "the fraction of entries nonzero in both whose signs differ (0.5 for independent updates; what "
                     "TIES-merging resolves by electing a sign)",
}
MAX_PANELS = 12  # layers drawn at most (evenly spread) so that a 32-layer model stays readable
ANNOTATE = 8  # members at most for the numbers to be written in the cells


def _draw(ax, m: pd.DataFrame, measure: str, limit: float | None, title: str, labels: bool = True):
    label, cmap = MEASURES[measure]
    values = m.to_numpy(dtype=float)
    shown = values.copy()
    np.fill_diagonal(shown, np.nan)  # the diagonal is known; keeping it out of the colours lets the pairs show
    if measure == "cosine":
        vmin, vmax = -limit, limit
    elif measure == "sign_conflict":
        vmin, vmax = 0.5 - limit, 0.5 + limit
    else:
        vmin, vmax = 0.0, limit
    image = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    n = len(m)
    if n <= ANNOTATE:
        for i in range(n):
            for j in range(n):
                if i != j and np.isfinite(values[i, j]):
                    dark = abs(image.norm(values[i, j]) - (0.5 if measure in ("cosine", "sign_conflict") else 0.0)) > 0.35
                    ax.text(j, i, f"{values[i, j]:.2g}", ha="center", va="center", fontsize=7,
                            color="white" if dark else "black")
    ticks = list(range(n))
    ax.set_xticks(ticks, [str(x) for x in m.columns] if labels else [""] * n, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(ticks, [str(x) for x in m.index] if labels else [""] * n, fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.grid(False)
    return image, label


def _limit(frames: list[pd.DataFrame], measure: str) -> float:
    """The colour range: symmetric around 0 (cosine) or 0.5 (sign conflict) to the largest off-diagonal value."""
    off = []
    for m in frames:
        v = m.to_numpy(dtype=float).copy()
        np.fill_diagonal(v, np.nan)
        off.append(v[np.isfinite(v)])
    values = np.concatenate(off) if off else np.zeros(0)
    if values.size == 0:
        return 1.0
    if measure == "cosine":
        return float(max(np.abs(values).max(), 1e-3))
    if measure == "sign_conflict":
        return float(max(np.abs(values - 0.5).max(), 1e-3))
    return float(max(values.max(), 1e-3))


def pairs_chart(pairs: pd.DataFrame, steps: dict[str, float] | None = None, *, measure: str = "cosine",
                title: str = "How alike the updates are: member × member (mean over modules)") -> Chart:
    """One member × member map per run of ``measure``, the mean over every module both members have."""
    pairs = compared(pairs)
    if pairs.empty:
        return empty_chart(title, "no compared pairs in this selection (adapter_similarity needs two or more "
                                  "adapters or checkpoints of the same modules)")
    runs = sorted(pairs["run"].astype(str).unique()) if "run" in pairs.columns else [""]
    frames = [matrix(pairs[pairs["run"].astype(str) == r] if r else pairs, measure,
                     members(pairs[pairs["run"].astype(str) == r] if r else pairs, steps)) for r in runs]
    fig = Figure(figsize=(4.2 * len(runs) + 1.2, 4.4), layout="constrained")
    axes = fig.subplots(1, len(runs), squeeze=False)[0]
    limit = _limit(frames, measure)
    image = label = None
    for ax, run, m in zip(axes, runs, frames):
        image, label = _draw(ax, m, measure, limit, run)
    fig.colorbar(image, ax=list(axes)).set_label(label)
    fig.suptitle(title, fontsize=10)
    caption = (f"Each cell is one pair of adapters or checkpoints, averaged over the modules both have: {READING[measure]}. "
               "Members in training order; the diagonal (an update with itself) is left blank.")
    return Chart(fig, title, caption)


def layers_chart(pairs: pd.DataFrame, steps: dict[str, float] | None = None, *, measure: str = "cosine",
                 title: str = "How the update turns during training: checkpoint × checkpoint per layer") -> Chart:
    """One member × member map of ``measure`` per layer (mean over that layer's modules), for one run's rows."""
    pairs = compared(pairs)
    pairs = pairs[pairs["layer"].notna()] if "layer" in pairs.columns else pairs.iloc[0:0]
    if pairs.empty:
        return empty_chart(title, "no compared pairs with a layer in this selection")
    order = members(pairs, steps)
    layers = sorted(pairs["layer"].astype(int).unique())
    if len(layers) > MAX_PANELS:
        layers = [layers[int(round(i))] for i in np.linspace(0, len(layers) - 1, MAX_PANELS)]
    frames = [matrix(pairs[pairs["layer"].astype(int) == layer], measure, order) for layer in layers]
    cols = min(4, len(layers))
    rows = math.ceil(len(layers) / cols)
    side = 2.2 if len(order) <= 4 else 3.0
    fig = Figure(figsize=(side * cols + 1.2, side * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    limit = _limit(frames, measure)
    image = label = None
    for k, (ax, layer, m) in enumerate(zip(axes, layers, frames)):
        image, label = _draw(ax, m, measure, limit, f"layer {layer}", labels=(k % cols == 0) or len(order) <= 4)
    for ax in axes[len(layers):]:
        ax.axis("off")
    fig.colorbar(image, ax=list(axes)).set_label(label)
    fig.suptitle(title, fontsize=10)
    caption = (f"Per layer, each cell compares two checkpoints' updates, averaged over the layer's modules: {READING[measure]}. "
               "Along a row read how far the update has turned from that checkpoint's. Checkpoints in training order; "
               "the diagonal is left blank.")
    return Chart(fig, title, caption)


def phi_chart(grid: pd.DataFrame, *, title: str = "LoRA's subspace similarity φ(i, j) (mean over modules)") -> Chart:
    """φ(i, j) of one pair, left and right singular vectors side by side, the mean over the rows' modules."""
    if grid.empty:
        return empty_chart(title, "no φ(i, j) rows in this selection")
    sides = [s for s in ("left", "right") if (grid["side"] == s).any()]
    fig = Figure(figsize=(3.6 * len(sides) + 1.2, 3.6), layout="constrained")
    axes = fig.subplots(1, len(sides), squeeze=False)[0]
    image = None
    for ax, side in zip(axes, sides):
        g = grid[grid["side"] == side].groupby(["i", "j"])["phi"].mean().unstack("j").sort_index().sort_index(axis=1)
        image = ax.imshow(g.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1, origin="lower", interpolation="nearest")
        ax.set_xticks(range(g.shape[1]), [str(int(j)) for j in g.columns], fontsize=7)
        ax.set_yticks(range(g.shape[0]), [str(int(i)) for i in g.index], fontsize=7)
        ax.set_xlabel("j (b's top-j directions)")
        ax.set_ylabel("i (a's top-i directions)")
        ax.set_title(f"{side} singular vectors", fontsize=9)
        ax.grid(False)
    fig.colorbar(image, ax=list(axes)).set_label("φ(i, j) = ‖U_a,iᵀ U_b,j‖²_F / min(i, j)")
    fig.suptitle(title, fontsize=10)
    caption = ("1: the smaller subspace lies inside the larger; 0: orthogonal. Random subspaces of an n-dimensional space "
               "give about max(i, j)/n, so a bright cell at small i, j is a shared top direction.")
    return Chart(fig, title, caption)
