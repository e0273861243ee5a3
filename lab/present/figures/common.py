"""What every figure shares: the Chart container, one visual style, colours and PNG encoding.

A figure function takes tidy rows (a DataFrame shaped like a ``lab.store.schema`` table) and
returns a :class:`Chart`: the matplotlib figure plus a title and a one-line caption saying what
the reader should see. The dashboard shows charts with ``st.pyplot`` and the report embeds them
as PNG, so both show the same picture with the same words.
"""

from __future__ import annotations

import base64
import io
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import matplotlib

matplotlib.use("Agg")  # no display; the dashboard and the report only need image bytes

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.layout_engine import PlaceHolderLayoutEngine  # noqa: E402

NATS = "entropy (nats)"

# Series that are not runs (methods of a merge, fits): tab10, distinguishable in print and for the
# common colour-vision deficiencies. Runs take their colour from lab.present.colours instead.
PALETTE = plt.get_cmap("tab10").colors
THEORY = {"page": "#444444", "max": "#999999", "control": "#bbbbbb", "lora_control": "#c7a27c", "rank": "#d62728"}


DPI = 120  # one resolution for HTML and PDF, so each chart is rendered once per report


@dataclass
class Chart:
    """A figure with its title and the one-line caption that says what to look for."""

    figure: Figure | None  # None once only the PNG is kept (a chart from a report worker)
    title: str
    caption: str
    anchor: str = ""  # the figure's id in a report (``fig-…``), which the findings' numbers link to
    _png: dict[int, bytes] = field(default_factory=dict, repr=False)

    def png(self, dpi: int = DPI) -> bytes:
        """The figure as PNG bytes (rendered once per resolution; constrained layout already fits the legend)."""
        if dpi not in self._png:
            self._png[dpi] = _png(self.figure, dpi)
        return self._png[dpi]

    def again(self) -> "Chart":
        """The same picture as another chart, with no anchor yet: its figure and PNGs shared, rendered once for both
        (a family's headline figure shown again in its section)."""
        return Chart(self.figure, self.title, self.caption, "", self._png)

    def png_base64(self, dpi: int = DPI) -> str:
        """The figure as a base64 PNG, ready for an ``<img src="data:image/png;base64,...">``."""
        return base64.b64encode(self.png(dpi)).decode("ascii")

    def close(self) -> None:
        """Drop the figure's artists now rather than at garbage collection (nothing to do without a figure:
        a chart that came back from a report worker holds its PNG only)."""
        if self.figure is not None:
            self.figure.clear()


PNG_COMPRESSION = 3  # zlib level: ~40 % less encoding CPU than Pillow's default 6, ~8 % more bytes


def _png(fig: Figure, dpi: int) -> bytes:
    """``fig`` laid out and drawn at ``dpi``, as an RGB PNG: the pixels ``savefig(format="png")`` writes, without
    its alpha channel (a figure's background is opaque) and at zlib level ``PNG_COMPRESSION``; the PDF then embeds
    the image as it is, where an RGBA PNG has its alpha split off and recompressed
    (tests/report/test_report_build.py compares the pixels with savefig's)."""
    from PIL import Image

    with _laid_out(fig, dpi):
        raw, size = fig.canvas.print_to_buffer()  # the Agg canvas _laid_out gave the figure, at ``dpi``
    buf = io.BytesIO()
    Image.frombuffer("RGBA", size, raw, "raw", "RGBA", 0, 1).convert("RGB").save(
        buf, format="png", compress_level=PNG_COMPRESSION, dpi=(dpi, dpi))
    return buf.getvalue()


@contextmanager
def _laid_out(fig: Figure, dpi: int) -> Iterator[None]:
    """Within the block, ``fig`` on an Agg canvas at ``dpi``, laid out by its layout engine and the engine switched
    off, ready to draw.

    ``savefig`` with a layout engine draws the whole figure once without output to lay it out, then
    again to render it. The layout itself only needs the text extents, which the engine measures on
    its own; run at the saving resolution, it places every axes exactly where savefig's own pass would
    (tests/report/test_report_build.py compares the pixels with savefig's for every figure of a report)."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        # the canvas that draws: the layout then measures text with the renderer that draws it, whose
        # text extents are cached (a bare Figure's canvas would lend the layout a renderer of its own)
        FigureCanvasAgg(fig)
    engine = fig.get_layout_engine()
    shown = fig.dpi
    fig.dpi = dpi
    try:
        if engine is not None and not isinstance(engine, PlaceHolderLayoutEngine) and fig.axes:
            engine.execute(fig)
        fig.set_layout_engine(None)  # "none" would leave a placeholder engine, for which savefig lays out again
        yield
    finally:
        fig.dpi = shown
        fig.set_layout_engine(engine)


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
    """The i-th colour of a series that is not a run (runs: ``lab.present.colours.run_colour``)."""
    return PALETTE[i % len(PALETTE)]


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


def training_order(frame: pd.DataFrame) -> tuple:
    """Sort key of one checkpoint's rows: its step (none first), then its checkpoint name."""
    step = frame["step"].iloc[0] if "step" in frame.columns and len(frame) else None
    name = str(frame["checkpoint"].iloc[0]) if "checkpoint" in frame.columns and len(frame) else ""
    return (-1.0 if step is None or pd.isna(step) else float(step), name)


def by_run(df: pd.DataFrame):
    """(run, rows) per run in name order; one group named '' when the rows have no run column."""
    if "run" not in df.columns:
        return [("", df)]
    return [(str(run), g) for run, g in df.groupby("run", sort=True, dropna=False)]


def checkpoints_in_order(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(checkpoint, rows) of one run's rows in training order (a single group when there is no checkpoint column)."""
    if "checkpoint" not in df.columns:
        return [("", df)]
    groups = [(str(ck), g) for ck, g in df.groupby("checkpoint", sort=False, dropna=False)]
    return sorted(groups, key=lambda item: training_order(item[1]))


def run_line(ax, x, y, *, run, position: int = 0, count: int = 1, style: str = "-", marker: str | None = "o",
             description: str = "", **kwargs):
    """One data line of ``run``: the run's colour, faint for an earlier checkpoint (``position`` of
    ``count`` in training order), ``style`` for what else varies. The line is tagged with the run's
    name (its gid) and labelled for readers of the figure, not for the legend (see :func:`run_legend`)."""
    from lab.present.colours import checkpoint_alpha, run_colour

    last = position >= count - 1
    options = dict(color=run_colour(run), alpha=checkpoint_alpha(position, count), ls=style,
                   marker=marker if last or style == "none" else None, ms=3, lw=1.8 if last else 1.1)
    options.update(kwargs)
    (line,) = ax.plot(x, y, label="_" + (description or str(run)), **options)
    line.set_gid(str(run))
    return line


def grouped_lines(ax, rows: pd.DataFrame, *, x: str, y: str, by: str, style, label, agg: str = "mean") -> tuple[list[str], bool]:
    """Per run (its colour), checkpoint in training order (earlier ones fainter) and value v of the column ``by``
    (line style ``style(v)``): ``y`` aggregated by ``agg`` over each ``x``, drawn as one :func:`run_line` described as
    "run · checkpoint · label(v)". Returns (runs, whether some lines are faint), what :func:`run_legend` takes."""
    runs, faint = [], False
    for run, run_rows in by_run(rows):
        runs.append(run)
        series = checkpoints_in_order(run_rows)
        faint |= len(series) > 1
        for j, (checkpoint, by_checkpoint) in enumerate(series):
            for value, g in by_checkpoint.groupby(by, sort=True):
                g = g.groupby(x, as_index=False)[y].agg(agg).sort_values(x)
                run_line(ax, g[x], g[y], run=run, position=j, count=len(series), style=style(value),
                         description=f"{run} · {checkpoint} · {label(value)}")
    return runs, faint


def run_legend(ax, runs, *, faint: bool = False, styles: dict | None = None, style_name: str = "role",
               markers: dict | None = None, marker_name: str = "role") -> None:
    """Legend entries: one per run in its colour, one for the faint earlier checkpoints when there are
    some, and one per line style (or marker) with what it stands for."""
    from lab.present.colours import run_colour, run_label

    for run in runs:
        (proxy,) = ax.plot([], [], color=run_colour(run), lw=2, label=run_label(run) if run != "" else "measured")
        proxy.set_gid(str(run))
    if faint:
        ax.plot([], [], color="#777777", alpha=0.35, lw=1.1, label="fainter: earlier checkpoints of the same run")
    for value, style in (styles or {}).items():
        ax.plot([], [], color="#555555", ls=style, label=f"{style_name} {value}".strip())
    for value, marker in (markers or {}).items():
        ax.plot([], [], color="#555555", ls="none", marker=marker, label=f"{marker_name} {value}".strip())


def styles_for(df: pd.DataFrame, candidates=("role", "source")) -> tuple[str | None, dict]:
    """The first column of ``candidates`` that varies in ``df``, and a line style per value of it."""
    for column in candidates:
        if column in df.columns and df[column].nunique() > 1:
            values = sorted(df[column].dropna().unique(), key=str)
            return column, {v: LINE_STYLES[i % len(LINE_STYLES)] for i, v in enumerate(values)}
    return None, {}


def layer_lines(df: pd.DataFrame, panels: list[tuple]) -> None:
    """Per-layer lines (mean over modules of a layer) on one or more panels ``[(ax, column), ...]``.

    Colour is the run's (:mod:`lab.present.colours`), a run's earlier checkpoints are fainter, and
    the line style shows the role (or the source, when the roles do not vary).
    """
    style_key, styles = styles_for(df)
    runs, faint = [], False
    for run, rows in by_run(df):
        runs.append(run)
        series = checkpoints_in_order(rows)
        faint |= len(series) > 1
        for j, (checkpoint, by_checkpoint) in enumerate(series):
            groups = by_checkpoint.groupby(style_key, sort=True) if style_key else [(None, by_checkpoint)]
            for value, g in groups:
                g = g.groupby("layer", as_index=False).mean(numeric_only=True).sort_values("layer")
                description = " · ".join(str(p) for p in (run, checkpoint, value) if p not in (None, ""))
                for ax, column in panels:
                    run_line(ax, g["layer"], g[column], run=run, position=j, count=len(series),
                             style=styles.get(value, "-"), description=description)
    run_legend(panels[0][0], runs, faint=faint, styles=styles, style_name=style_key or "")


def empty_chart(title: str, message: str) -> Chart:
    """A chart that says why there is nothing to draw (instead of a blank plot)."""
    fig, (ax,) = new_figure(height=1.6)
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=10, wrap=True)
    return Chart(fig, title, message)
