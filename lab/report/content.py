"""What a report says, independent of its format: provenance per run and one section per probe
family with charts, summary tables and the meaning of every column.

``build(results_dir)`` gathers it once; ``lab.report.html`` and ``lab.report.pdf`` only lay it
out, so the HTML and the PDF carry the same content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from lab.report import load
from lab.report.figures.common import Chart
from lab.report.frames import fmt
from lab.report.theory import FAMILIES, Family, columns, table_description
from lab.store import Run

NOT_COMPUTED = "not computed in this run"


@dataclass
class TableBlock:
    """A small table already formatted as strings (the formats escape or encode them)."""

    title: str
    header: list[str]
    rows: list[list[str]]
    caption: str = ""

    @classmethod
    def from_frame(cls, title: str, frame: pd.DataFrame, caption: str = "", max_rows: int = 60) -> "TableBlock":
        shown = frame.head(max_rows)
        rows = [[fmt(v) for v in row] for row in shown.itertuples(index=False)]
        if len(frame) > max_rows:
            caption = f"{caption} (first {max_rows} of {len(frame)} rows)".strip()
        return cls(title, [str(c) for c in frame.columns], rows, caption)


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
class RunInfo:
    """One run's provenance from its manifest."""

    name: str
    status: str
    summary: TableBlock  # started, ended, seconds, error
    inputs: TableBlock
    options: TableBlock
    versions: TableBlock
    tables: TableBlock


@dataclass
class Report:
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


def build(results_dir: str | Path, *, title: str | None = None) -> Report:
    """The report's content for every run in ``results_dir`` (a results folder or one run folder)."""
    from lab.report import sections  # the per-family builders

    runs = load.runs_in(results_dir)
    names = [r.name for r in runs]
    title = title or ("lab report: " + ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else ""))
    built = []
    for family in FAMILIES:
        section = _empty_section(family, runs)
        if section.computed:
            sections.BUILDERS.get(family.key, sections.table_only)(section, runs)
        built.append(section)
    return Report(
        title=title,
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        results_dir=str(Path(results_dir).resolve()),
        overview=overview(runs),
        runs=[run_info(r) for r in runs],
        sections=built,
    )


def _empty_section(family: Family, runs: list[Run]) -> Section:
    computed = any(load.has_table(r.path, family.tables[0]) for r in runs)
    section = Section(family.key, family.title, family.theory, computed, message="" if computed else NOT_COMPUTED)
    for table in family.tables:
        if columns(table):
            section.columns[table] = columns(table)
            section.table_descriptions[table] = table_description(table)
    return section


def overview(runs: list[Run]) -> TableBlock:
    """The runs at a glance: status, when, how long, how many checkpoints and files, which tables."""
    rows = []
    for run in runs:
        m = run.manifest
        checkpoints = (m.get("inputs") or {}).get("checkpoints", [])
        rows.append({"run": run.name, "status": m.get("status", "unknown"), "started": m.get("started", ""),
                     "seconds": m.get("seconds"), "checkpoints": len(checkpoints),
                     "files read": sum(len(c.get("files", [])) for c in checkpoints) + len((m.get("inputs") or {}).get("base", [])),
                     "tables": ", ".join(run.tables())})
    return TableBlock.from_frame("Runs", pd.DataFrame(rows), "a run whose status is not complete stopped early")


def run_info(run: Run) -> RunInfo:
    """Provenance of one run: when, inputs with sizes and hashes, options, versions and tables."""
    m = run.manifest
    summary = pd.DataFrame(
        [("status", m.get("status", "")), ("started", m.get("started", "")), ("ended", m.get("ended", "")),
         ("seconds", m.get("seconds", "")), ("folder", str(run.path))]
        + ([("error", m["error"])] if m.get("error") else []),
        columns=["field", "value"],
    )
    inputs = []  # one row per file: what exactly was read, so the numbers can be traced to bytes
    for c in (m.get("inputs") or {}).get("checkpoints", []):
        for f in c.get("files", []) or [{}]:
            inputs.append({"checkpoint": c.get("name"), "step": c.get("step"), "format": c.get("format"),
                           "file": f.get("path", c.get("path")), "bytes": f.get("size"), "sha256": f.get("sha256", "")})
    for f in (m.get("inputs") or {}).get("base", []):
        inputs.append({"checkpoint": "base", "step": None, "format": "full", "file": f.get("path"),
                       "bytes": f.get("size"), "sha256": f.get("sha256", "")})
    options = pd.DataFrame([(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in (m.get("options") or {}).items()],
                           columns=["option", "value"])
    versions = pd.DataFrame(list((m.get("versions") or {}).items()), columns=["package", "version"])
    tables = pd.DataFrame(list((m.get("tables") or {}).items()), columns=["table", "rows"])
    return RunInfo(
        name=run.name,
        status=str(m.get("status", "unknown")),
        summary=TableBlock.from_frame("Run", summary),
        inputs=TableBlock.from_frame("Inputs", pd.DataFrame(inputs), "every file read, with its size and sha256"),
        options=TableBlock.from_frame("Options", options),
        versions=TableBlock.from_frame("Versions", versions),
        tables=TableBlock.from_frame("Tables", tables),
    )
