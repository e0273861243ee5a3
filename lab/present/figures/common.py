"""What every figure shares: the Chart container, one visual style, colours and PNG encoding.

A figure function takes tidy rows (a DataFrame shaped like a ``lab.store.schema`` table) and
returns a :class:`Chart`: the matplotlib figure plus a title and a one-line caption saying what
the reader should see. The dashboard shows charts with ``st.pyplot`` and the report embeds them
as PNG, so both show the same picture with the same words.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")  # no display; the dashboard and the report only need image bytes

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

NATS = "entropy (nats)"
ASYMPTOTIC = "asymptotic bound: a scale, not a verdict on this finite model"

# One colour per series, stable across figures: tab10 is distinguishable in print and for
# the common colour-vision deficiencies better than the default cycle's later entries.
PALETTE = plt.get_cmap("tab10").colors
THEORY = {"page": "#444444", "max": "#999999", "control": "#bbbbbb", "lora_control": "#c7a27c", "rank": "#d62728"}


DPI = 120  # one resolution for HTML and PDF, so each chart is rendered once per report


@dataclass
class Chart:
    """A figure with its title and the one-line caption that says what to look for."""

    figure: Figure
    title: str
    caption: str
    _png: dict[int, bytes] = field(default_factory=dict, repr=False)

    def png(self, dpi: int = DPI) -> bytes:
        """The figure as PNG bytes (rendered once per resolution; constrained layout already fits the legend)."""
        if dpi not in self._png:
            buf = io.BytesIO()
            self.figure.savefig(buf, format="png", dpi=dpi)
            self._png[dpi] = buf.getvalue()
        return self._png[dpi]

    def png_base64(self, dpi: int = DPI) -> str:
        """The figure as a base64 PNG, ready for an ``<img src="data:image/png;base64,...">``."""
        return base64.b64encode(self.png(dpi)).decode("ascii")

    def close(self) -> None:
        """Drop the figure's artists now rather than at garbage collection."""
        self.figure.clear()


def new_figure(ncols: int = 1, width: float = 6.4, height: float = 3.8, **kwargs) -> tuple[Figure, list]:
    """A figure with ``ncols`` side-by-side axes, in the lab's style."""
    # A bare Figure, not pyplot's: it is not kept in pyplot's registry, so a report drawing dozens of
    # charts holds only those still referenced.
    fig = Figure(figsize=(width * ncols if ncols > 1 else width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False, **kwargs)
    for ax in axes[0]:
        ax.grid(True, alpha=0.3, linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, list(axes[0])


def integer_ticks(ax, axis: str = "x") -> None:
    """Only whole-number ticks on an axis of layers, steps or cuts."""
    from matplotlib.ticker import MaxNLocator

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def log_if_wide(ax, values, axis: str = "y", decades: float = 1.5) -> None:
    """A log axis when the positive values span more than ``decades`` orders of magnitude, else linear
    (a log axis over a narrow range only produces unreadable ticks)."""
    import numpy as np

    v = np.asarray(pd.Series(values).dropna(), dtype=float)
    v = v[v > 0]
    if v.size and np.log10(v.max() / v.min()) > decades:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def colour(i: int) -> tuple[float, float, float]:
    """The i-th series colour."""
    return PALETTE[i % len(PALETTE)]


def series_label(keys: tuple, names: list[str]) -> str:
    """A legend label from the values of the grouping columns, leaving out empty ones."""
    parts = []
    for name, value in zip(names, keys):
        if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
            continue
        parts.append(f"step {int(value)}" if name == "step" else str(value))
    return " · ".join(parts) or "all"


def legend(fig: Figure, max_entries: int = 14) -> None:
    """One legend under the plot for all of a figure's axes (labels shared by panels appear once), so it
    never hides a curve."""
    handles, labels, seen = [], [], set()
    for ax in fig.axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label not in seen and not label.startswith("_"):
                seen.add(label)
                handles.append(h)
                labels.append(label)
    if not handles:
        return
    if len(handles) > max_entries:
        handles, labels = handles[:max_entries], labels[:max_entries]
        labels[-1] += " (legend truncated)"
    fig.legend(handles, labels, loc="outside lower center", ncols=2 if len(labels) > 3 else len(labels),
               fontsize=7.5, frameon=False)


LINE_STYLES = ["-", "--", ":", "-."]


def layer_lines(df: pd.DataFrame, panels: list[tuple], compare: tuple[str, ...] = ("run", "checkpoint", "step", "source")) -> None:
    """Per-layer lines (mean over modules of a layer) on one or more panels ``[(ax, column), ...]``.

    Colour shows what is compared (the columns of ``compare`` that vary: runs, checkpoints, steps,
    sources) and the line style shows the role; with nothing to compare, colour shows the role.
    """
    colour_keys = [c for c in compare if c in df.columns and df[c].nunique(dropna=False) > 1]
    styled = bool(colour_keys) and "role" in df.columns and df["role"].nunique() > 1
    colour_keys = colour_keys or ["role"]
    roles = sorted(df["role"].dropna().unique()) if styled else []
    for i, (key, by_colour) in enumerate(df.groupby(colour_keys, dropna=False, sort=True)):
        key = key if isinstance(key, tuple) else (key,)
        label = series_label(key, colour_keys)
        for role, g in (by_colour.groupby("role", sort=True) if styled else [(None, by_colour)]):
            g = g.groupby("layer", as_index=False).mean(numeric_only=True).sort_values("layer")
            style = LINE_STYLES[roles.index(role) % len(LINE_STYLES)] if styled else "-"
            for ax, column in panels:
                ax.plot(g["layer"], g[column], marker="o", ms=3, ls=style, color=colour(i), label=label)
    for n, role in enumerate(roles):  # legend entries for the line styles
        panels[0][0].plot([], [], color="#555555", ls=LINE_STYLES[n % len(LINE_STYLES)], label=f"role {role}")


def empty_chart(title: str, message: str) -> Chart:
    """A chart that says why there is nothing to draw (instead of a blank plot)."""
    fig, (ax,) = new_figure(height=1.6)
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=10, wrap=True)
    return Chart(fig, title, message)
