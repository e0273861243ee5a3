"""The report's content for a results folder, gathered once: provenance per run and one section
per probe family the schema declares, with charts, summary tables and the meaning of every column.

``build(results_dir)`` fills a :class:`~lab.report.document.Report`; ``lab.report.html`` and
``lab.report.pdf`` only lay it out, so the HTML and the PDF carry the same content.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from lab.present import load
from lab.present.provenance import overview, run_info
from lab.present.theory import NOT_COMPUTED, Family, columns, families, table_description
from lab.report.document import Report, Section
from lab.report.sections import BUILDERS
from lab.store import Run


def build(results_dir: str | Path, *, title: str | None = None) -> Report:
    """The report's content for every run in ``results_dir`` (a results folder or one run folder)."""
    runs = load.runs_in(results_dir)
    names = [r.name for r in runs]
    title = title or ("lab report: " + ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else ""))
    built = []
    for family in families():
        section = _empty_section(family, runs)
        if section.computed:
            BUILDERS[family.key](section, runs)
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
    computed = load.computed(runs, family.tables[0])
    section = Section(family.key, family.title, family.theory, computed, message="" if computed else NOT_COMPUTED)
    for table in family.tables:
        if columns(table):
            section.columns[table] = columns(table)
            section.table_descriptions[table] = table_description(table)
    return section
