"""The report's content for a results folder, gathered once: the findings (sentences with numbers,
computed from the tables) each with its family's headline figure, one section per probe family the
schema declares, with charts, summary tables and the meaning of every column, and provenance per run.

``build(results_dir)`` fills a :class:`~lab.report.document.Report`; ``lab.report.html`` and
``lab.report.pdf`` only lay it out, so the HTML and the PDF carry the same content.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from lab.present import colours, load
from lab.present.findings import summarize
from lab.present.headlines import headline
from lab.present.provenance import overview, run_info
from lab.present.theory import NOT_COMPUTED, Family, columns, families, table_description
from lab.report.document import Finding, Report, Section
from lab.report.sections import BUILDERS
from lab.store import Run


def build(results_dir: str | Path, *, title: str | None = None) -> Report:
    """The report's content for every run in ``results_dir`` (a results folder or one run folder)."""
    runs = load.runs_in(results_dir)
    names = [r.name for r in runs]
    title = title or ("lab report: " + ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else ""))
    # one colour per run in every figure of the report, runs of one method side by side
    with colours.using(names, load.run_methods(runs)):
        found = []
        for family_findings in summarize(runs):
            chart = headline(family_findings.key, runs)
            found.append(Finding(family_findings, chart, 0))
        for number, finding in enumerate((f for f in found if f.chart is not None), start=1):
            finding.number = number
        built = []
        for family in families():
            section = _empty_section(family, runs)
            if section.computed:
                BUILDERS[family.key](section, runs)
                for i, chart in enumerate(section.charts):
                    chart.anchor = chart.anchor or f"fig-{family.key}-{i + 1}"
            built.append(section)
    return Report(
        title=title,
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        results_dir=str(Path(results_dir).resolve()),
        overview=overview(runs),
        runs=[run_info(r) for r in runs],
        sections=built,
        findings=found,
    )


def _empty_section(family: Family, runs: list[Run]) -> Section:
    computed = load.computed(runs, family.tables[0])
    section = Section(family.key, family.title, family.theory, computed, message="" if computed else NOT_COMPUTED)
    for table in family.tables:
        if columns(table):
            section.columns[table] = columns(table)
            section.table_descriptions[table] = table_description(table)
    return section
