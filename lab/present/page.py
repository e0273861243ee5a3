"""What a family's page is built on: the one section spec that both the report and the dashboard render.

A family's ``section(page)`` (see :class:`lab.present.family.Family`) says, in reading order, which
figures and tables a reader gets from the family's tables, with their captions; it knows nothing
of Streamlit, HTML or PDF. Two renderers implement :class:`Page`:

* the report's (:class:`lab.report.page.ReportPage`): reads every run, answers each choice
  with its default, files figures as overview or detail (detail figures: the HTML only), formats
  tables with four significant digits and leaves reference rows out;
* the dashboard's (:mod:`dashboards.page`): reads the rows inside the sidebar's selection, asks the
  reader each choice with a widget, draws every figure and shows tables as interactive frames,
  reference rows folded.

A section therefore writes, for example::

    def section(page):
        rows = page.read("spectra")
        if rows.empty:
            page.message("No spectra in this selection.")
            return
        page.heading("Ranks by layer")
        page.figure(partial(figures.ranks_chart, rows))
        modules = page.choose_many("Modules", sorted(rows["module"].unique()), default=[...])
        ...
        page.table("Ranks per role", summary, "means over layers")
        page.table("spectra rows", rows, reference=True)
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pandas as pd

from lab.present.figures.common import Chart
from lab.store import Run


class Headline:
    """A section's figure that is its family's headline figure when the section shows every row with its choices at
    their defaults (the report): ``page.figure(Headline(partial(...)))``. Calling it draws it (the dashboard, where
    a reader's selection and choices make it a figure of its own); the report shows the headline's chart there
    instead, drawn once for the findings and the section (tests/report/test_report_sections.py draws both and
    compares them)."""

    def __init__(self, draw: Callable[[], Chart]):
        self.draw = draw

    def __call__(self) -> Chart:
        return self.draw()


class Page:
    """The calls a family's section makes; a renderer implements them.

    ``runs``: the runs shown (the dashboard's selected runs, every run of the report).
    ``interactive``: whether a reader is there to answer :meth:`choose` (the dashboard).
    """

    runs: list[Run]
    interactive: bool = False

    def read(self, table: str, columns: Sequence[str] | None = None, filters: Sequence[tuple] = (), *,
             runs: Sequence[Run] | None = None, checkpoint: bool = True, role: bool = True, step: bool = True,
             layer: bool = True) -> pd.DataFrame:
        """Rows of ``table`` of ``runs`` (default :attr:`runs`), stacked, that pass ``filters`` ((column, op,
        value) tuples, all of which hold). The dashboard also applies the sidebar's selection (without its
        checkpoint, role, step or layer filter when ``checkpoint``/``role``/``step``/``layer`` is False: rows
        that join two checkpoints or describe a whole model); the report reads every row."""
        raise NotImplementedError

    def computed(self, table: str, runs: Sequence[Run] | None = None) -> bool:
        """Whether any of ``runs`` (default :attr:`runs`) holds ``table``."""
        raise NotImplementedError

    def index(self) -> pd.DataFrame:
        """The modules shown, one row per module update (the deltas table's run, checkpoint, step, module,
        layer, role, kind, rank_bound; controls left out): the choices' options."""
        raise NotImplementedError

    def choose(self, label: str, options: Sequence[Any], default: Any, *, help: str = "",
               horizontal: bool = False) -> Any:
        """One of ``options``: the reader's choice on the dashboard (a select box; radio buttons when
        ``horizontal``), ``default`` in the report."""
        return default

    def choose_many(self, label: str, options: Sequence[Any], default: Sequence[Any], *, help: str = "") -> list:
        """Several of ``options``: the reader's choice on the dashboard, ``default`` in the report."""
        return list(default)

    def heading(self, text: str) -> None:
        """A subheading before what follows (the dashboard's subheader; the report keeps its section flat)."""

    def figure(self, draw: Callable[[], Chart], *, detail: bool = False) -> None:
        """A figure, given as the function that draws it (so a format that does not show it never draws it).
        ``detail``: a per-run or per-module figure (the report's HTML only; the dashboard shows it)."""
        raise NotImplementedError

    def table(self, title: str, frame: pd.DataFrame, caption: str = "", *, reference: bool = False) -> None:
        """A table with a title and a caption. ``reference``: the raw rows, for looking things up (the
        dashboard folds them; the report leaves them out, the parquet files hold them)."""
        raise NotImplementedError

    def message(self, text: str) -> None:
        """Why nothing (more) is shown: e.g. the table is empty for the runs or the selection."""
        raise NotImplementedError
