"""What a report holds, independent of its format: the findings with their headline figures, one
section per probe family, and provenance per run. ``lab.report.content`` fills it; ``lab.report.html`` and ``lab.report.pdf`` lay it out."""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.present.blocks import TableBlock
from lab.present.figures.common import Chart
from lab.present.findings import FamilyFindings
from lab.present.provenance import RunInfo


@dataclass
class Section:
    """One probe family: computed or not, its theory, charts, tables and column meanings."""

    key: str
    title: str
    theory: str
    computed: bool
    charts: list[Chart] = field(default_factory=list)
    tables: list[TableBlock] = field(default_factory=list)
    columns: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # table -> (column, meaning)
    table_descriptions: dict[str, str] = field(default_factory=dict)
    message: str = ""


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
        """Every chart of the report in reading order: headline figures, then the sections'."""
        return [f.chart for f in self.findings if f.chart is not None] + [c for s in self.sections for c in s.charts]

    def figure_number(self, anchor: str) -> int | None:
        """The number of the headline figure with this anchor (None when there is none)."""
        return next((f.number for f in self.findings if f.chart is not None and f.chart.anchor == anchor), None)

    def close(self) -> None:
        """Free every chart's figure."""
        for chart in self.charts():
            chart.close()
