"""What a report holds, independent of its format: the findings with their headline figures, one
section per probe family, and provenance per run. ``lab.report.content`` fills it; ``lab.report.html`` and ``lab.report.pdf`` lay it out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from lab.present.blocks import TableBlock
from lab.present.figures.common import Chart
from lab.present.sentences import FamilyFindings
from lab.present.provenance import RunInfo


LONG_TABLE = 24  # rows: a longer table is reference material, kept out of the PDF's body (see is_long)


@dataclass
class Section:
    """One probe family: computed or not, its theory, charts, tables and column meanings.

    ``charts`` are the family's overview figures (every run, every layer; one per layer group),
    shown by the HTML and the PDF; ``details`` are its per-run and per-module figures, shown by the
    HTML only. A builder adds a figure as the function that draws it (:meth:`chart`, :meth:`detail`),
    so a format that does not show it never draws it (``--format md`` embeds the headline figures
    only); a Chart appended to ``charts`` directly is an overview figure drawn already."""

    key: str
    title: str
    theory: str
    computed: bool
    charts: list[Chart] = field(default_factory=list)
    tables: list[TableBlock] = field(default_factory=list)
    columns: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # table -> (column, meaning)
    table_descriptions: dict[str, str] = field(default_factory=dict)
    message: str = ""
    details: list[Chart] = field(default_factory=list)
    pending: list[tuple[bool, Callable[[], Chart]]] = field(default_factory=list, repr=False)  # (detail?, draw)

    def chart(self, draw: Callable[[], Chart]) -> None:
        """Add an overview figure, drawn by ``draw()`` only when a format shows it."""
        self.pending.append((False, draw))

    def detail(self, draw: Callable[[], Chart]) -> None:
        """Add a per-run or per-module figure, drawn by ``draw()`` only when a format shows it."""
        self.pending.append((True, draw))

    def draw(self, *, overview: bool = True, details: bool = True) -> None:
        """Draw the pending overview and/or detail figures (each once, in the order they were added)."""
        keep = []
        for is_detail, draw in self.pending:
            if (details if is_detail else overview):
                (self.details if is_detail else self.charts).append(draw())
            else:
                keep.append((is_detail, draw))
        self.pending = keep

    @property
    def overview_count(self) -> int:
        """How many overview figures the section has, drawn or not."""
        return len(self.charts) + sum(not d for d, _ in self.pending)

    @property
    def detail_count(self) -> int:
        """How many detail figures the section has, drawn or not."""
        return len(self.details) + sum(d for d, _ in self.pending)

    def body_tables(self) -> list[TableBlock]:
        """The tables short enough for the PDF's body (the others go to its appendix)."""
        return [block for block in self.tables if not is_long(block)]

    def long_tables(self) -> list[TableBlock]:
        """The tables longer than ``LONG_TABLE`` rows: in place in the HTML and Markdown, in the PDF's appendix."""
        return [block for block in self.tables if is_long(block)]


def undrawn() -> Chart:
    """What stands for a figure whose drawing stayed behind (in a report worker, or out of a cached report): only
    its number is known."""
    raise RuntimeError("a figure left undrawn in a report worker or a cached report cannot be drawn afterwards")


def is_long(block: TableBlock) -> bool:
    """Whether a table is reference material rather than something to read: more than ``LONG_TABLE`` rows."""
    return len(block.rows) > LONG_TABLE


@dataclass
class Finding:
    """One family's findings with its headline figure (numbered from 1 in reading order)."""

    findings: FamilyFindings
    chart: Chart | None
    number: int


@dataclass
class Report:
    """A whole report: the findings with one headline figure per family, the detailed sections, and
    the runs' provenance as an appendix."""

    title: str
    generated: str
    results_dir: str
    overview: TableBlock  # one row per run: status, time, checkpoints, tables
    runs: list[RunInfo]
    sections: list[Section]
    findings: list[Finding] = field(default_factory=list)

    def charts(self) -> list[Chart]:
        """Every drawn chart of the report in reading order: headline figures, then each section's
        overview figures and its drawn details."""
        return ([f.chart for f in self.findings if f.chart is not None]
                + [c for s in self.sections for c in s.charts + s.details])

    def figure_number(self, anchor: str) -> int | None:
        """The number of the headline figure with this anchor (None when there is none)."""
        return next((f.number for f in self.findings if f.chart is not None and f.chart.anchor == anchor), None)

    def close(self) -> None:
        """Free every chart's figure."""
        for chart in self.charts():
            chart.close()
