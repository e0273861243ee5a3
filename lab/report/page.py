"""The report's renderer of a family's section spec (:mod:`lab.present.page`): every run, every choice
at its default, figures filed as overview (HTML and PDF) or detail (HTML only) and drawn only when a
format shows them, tables formatted to four significant digits, reference rows left to the parquet files."""

from __future__ import annotations

from typing import Callable, Sequence

import pandas as pd

from lab.present import load
from lab.present.blocks import TableBlock
from lab.present.figures.common import Chart
from lab.present.page import Headline, Page
from lab.report.document import Section
from lab.store import Run

class ReportPage(Page):
    """Fills a report :class:`~lab.report.document.Section` from a family's ``section(page)``."""

    interactive = False

    def __init__(self, section: Section, runs: Sequence[Run], headline: Chart | None = None):
        self.section = section
        self.runs = list(runs)
        self.headline = headline  # the family's headline figure, drawn already: shown where the section marks it

    def read(self, table, columns=None, filters=(), *, runs=None, checkpoint=True, role=True, step=True,
             layer=True) -> pd.DataFrame:
        return load.read_runs(list(self.runs if runs is None else runs), table, list(columns) if columns else None,
                              list(filters) or None)

    def computed(self, table, runs=None) -> bool:
        return load.computed(list(self.runs if runs is None else runs), table)

    def index(self) -> pd.DataFrame:
        d = load.read_runs(self.runs, "deltas", load.INDEX_COLUMNS)
        return d[d["checkpoint"].astype(str) != "controls"] if not d.empty else d

    def figure(self, draw: Callable[[], Chart], *, detail: bool = False) -> None:
        if isinstance(draw, Headline) and self.headline is not None:
            draw = self.headline.again  # the same picture: drawn once, with an anchor of its own here
        (self.section.detail if detail else self.section.chart)(draw)

    def table(self, title, frame, caption="", *, reference=False) -> None:
        if not reference:
            self.section.tables.append(TableBlock.from_frame(title, frame, caption))

    def message(self, text: str) -> None:
        self.section.message = text


def build(section: Section, runs: Sequence[Run], spec: Callable[[Page], None], headline: Chart | None = None) -> None:
    """Fill ``section`` with what ``spec`` (a family's section) shows of ``runs``; where it shows the family's headline
    figure (:class:`~lab.present.page.Headline`), ``headline`` when given (drawn already for the findings)."""
    spec(ReportPage(section, runs, headline))
