"""What a report holds, independent of its format: provenance per run and one section per probe
family. ``lab.report.content`` fills it; ``lab.report.html`` and ``lab.report.pdf`` lay it out."""

from __future__ import annotations

from dataclasses import dataclass, field

from lab.present.blocks import TableBlock
from lab.present.figures.common import Chart
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
class Report:
    """A whole report: title, when and from where, the runs' provenance and the sections."""

    title: str
    generated: str
    results_dir: str
    overview: TableBlock  # one row per run: status, time, checkpoints, tables
    runs: list[RunInfo]
    sections: list[Section]

    def close(self) -> None:
        """Free every chart's figure."""
        for section in self.sections:
            for chart in section.charts:
                chart.close()
