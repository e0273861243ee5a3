"""The report's content for a results folder, gathered once: the findings (sentences with numbers,
computed from the tables) each with its family's headline figure, one section per probe family the
schema declares, with charts, summary tables and the meaning of every column, and provenance per run.

``build(results_dir)`` fills a :class:`~lab.report.document.Report`; ``lab.report.html``,
``lab.report.pdf`` and ``lab.report.markdown`` only lay it out, so every format carries the same
findings, figures and tables, each figure drawn once and its PNG shared. Each table of each run is
read from disk once (``load.read_once``). A section's overview figures are drawn only with
``overview=True`` (the HTML and the PDF show them), its per-run and per-module detail figures only
with ``details=True`` (the HTML); the Markdown embeds the headline figures and points to the others.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from lab.present import colours, load, provenance
from lab.present.figures.common import DPI, Chart
from lab.present.findings import headline, summarize_family
from lab.present.sentences import FamilyFindings
from lab.present.families import by_key, families, load_recorded_plugins
from lab.present.family import NOT_COMPUTED, Family, columns, rows_section, table_description
from lab.report import cache as report_cache
from lab.report.document import Finding, Report, Section, undrawn
from lab.report.page import build as build_section
from lab.store import Run

Part = tuple[FamilyFindings | None, Chart | None, Section]  # one family's findings, headline figure and section


def build(results_dir: str | Path, *, title: str | None = None, overview: bool = True, details: bool = True,
          workers: int = 1, dpi: int = DPI, while_waiting: Callable[[], object] | None = None,
          cache: bool = False) -> Report:
    """The report's content for every run in ``results_dir`` (a results folder or one run folder):
    findings with their headline figures, and per family its section, with its overview figures
    drawn when ``overview`` and its per-run and per-module figures drawn when ``details``.

    With ``workers`` > 1 (where the platform forks) the families' findings and sections are built in
    that many forked processes, each also rendering its figures' PNGs at ``dpi``; their charts then
    come back as PNG bytes without a matplotlib figure (``chart.figure`` is None), and this process
    calls ``while_waiting()`` (e.g. to import what writes the formats) while they work. With one
    worker every chart keeps its figure (the tests read the drawn lines back).

    With ``cache``, the families' findings, figures and sections are taken from the results folder's
    report cache when an entry for these files, options and code is there (:mod:`lab.report.cache`;
    nothing is summarised or drawn, every chart is PNG bytes), and stored there when built."""
    runs = load.runs_in(results_dir)
    load_recorded_plugins(runs)  # a plugin's families get their sections too
    names = [r.name for r in runs]
    title = title or ("lab report: " + ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else ""))
    methods = load.run_methods(runs)
    keys = [family.key for family in families()]
    key = report_cache.address(results_dir, runs, dpi) if cache else ""
    parts = report_cache.load(results_dir, key, overview, details) if cache else None
    if parts is not None and [section.key for _, _, section in parts] == keys:
        if while_waiting is not None:
            while_waiting()
        return _report(parts, runs, title, results_dir)
    if workers > 1 and len(keys) > 1 and "fork" in multiprocessing.get_all_start_methods():
        parts = _in_workers(keys, str(results_dir), names, methods, overview, details, workers, dpi, while_waiting)
    else:
        with load.read_once():
            parts = [_family(key, runs, names, methods, overview, details) for key in keys]
    if cache:
        report_cache.store(results_dir, key, overview, details, parts, dpi)
    return _report(parts, runs, title, results_dir)


def _report(parts: list[Part], runs: list[Run], title: str, results_dir: str | Path) -> Report:
    """The report of the families' parts, in reading order, with the runs' provenance."""
    found = [Finding(findings, chart, 0) for findings, chart, _ in parts if findings is not None]
    for number, finding in enumerate((f for f in found if f.chart is not None), start=1):
        finding.number = number
    return Report(
        title=title,
        generated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        results_dir=str(Path(results_dir).resolve()),
        overview=provenance.overview(runs),
        runs=[provenance.run_info(r) for r in runs],
        sections=[section for _, _, section in parts],
        findings=found,
    )


def _family(key: str, runs: list[Run], names: list[str], methods: dict[str, str], overview: bool,
            details: bool) -> Part:
    """One family's findings, headline figure (when it has findings) and section."""
    findings, chart = _findings(key, runs, names, methods)
    return findings, chart, _section(key, runs, names, methods, overview, details, chart)


def _findings(key: str, runs: list[Run], names: list[str], methods: dict[str, str]) -> tuple[FamilyFindings | None, Chart | None]:
    """One family's findings and its headline figure (when it has findings)."""
    # one colour per run in every figure of the report, runs of one method side by side
    with colours.using(names, methods):
        findings = summarize_family(key, runs)
        return findings, (headline(key, runs) if findings is not None else None)


def _section(key: str, runs: list[Run], names: list[str], methods: dict[str, str], overview: bool,
             details: bool, headline: Chart | None = None) -> Section:
    """One family's section, its overview and/or detail figures drawn as asked (where it shows the family's
    headline figure, ``headline`` when given: drawn once for both)."""
    family = by_key(key)
    with colours.using(names, methods):
        section = _empty_section(family, runs)
        if section.computed:
            build_section(section, runs, family.section or rows_section(family), headline)
            section.draw(overview=overview, details=details)
            for i, drawn in enumerate(section.charts + section.details):
                drawn.anchor = drawn.anchor or f"fig-{key}-{i + 1}"
    return section


# what a forked worker needs, set before the fork (nothing of it is pickled)
_TASK: dict = {}
# the tables a forked worker has read, kept for all the tasks it runs (each process starts with its own, empty)
_WORKER_TABLES: dict = {}


def _in_workers(keys: list[str], results_dir: str, names, methods, overview: bool, details: bool, workers: int,
                dpi: int, while_waiting: Callable[[], object] | None) -> list[Part]:
    """The families built, and their figures rendered, in forked processes, handed out to whichever worker is
    free, the costliest first (``Family.cost``: in reading order, the demo's two workers ended ~1 s apart, the
    last family alone); each worker keeps the tables it has read for the families it builds next.
    (Splitting a family into a findings task and a section task balanced the workers better but cost
    ~1.3 s more CPU on the demo's runs: both workers then read and import what each family needs.)"""
    global _TASK
    _TASK = dict(results_dir=results_dir, names=names, methods=methods, overview=overview, details=details, dpi=dpi)
    parts: dict[str, Part] = {}
    try:
        with multiprocessing.get_context("fork").Pool(min(workers, len(keys)), initializer=_start_worker) as pool:
            costliest_first = sorted(keys, key=lambda key: -by_key(key).cost)  # stable: ties in reading order
            results = pool.imap_unordered(_worker, costliest_first, chunksize=1)
            if while_waiting is not None:
                while_waiting()
            for key, part in results:
                parts[key] = part
    finally:
        _TASK = {}
    return [parts[key] for key in keys]


def _start_worker() -> None:
    _WORKER_TABLES.clear()


def _worker(key: str) -> tuple[str, Part]:
    t = _TASK
    with load.read_once(_WORKER_TABLES):
        findings, chart, section = _family(key, load.runs_in(t["results_dir"]), t["names"], t["methods"],
                                           t["overview"], t["details"])
    for drawn in ([chart] if chart is not None else []) + section.charts + section.details:
        _keep_png(drawn, t["dpi"])
    # the pending figures (functions of frames) stay too; only their number is needed
    return key, (findings, chart, replace(section, pending=[(is_detail, undrawn) for is_detail, _ in section.pending]))


def _keep_png(chart: Chart, dpi: int) -> None:
    """The chart's PNG rendered, its figure dropped (the bytes go back to the parent, the figure stays)."""
    chart.png(dpi)
    chart.figure = None


def _empty_section(family: Family, runs: list[Run]) -> Section:
    computed = load.computed(runs, family.tables[0])
    section = Section(family.key, family.title, family.theory, computed, message="" if computed else NOT_COMPUTED)
    for table in family.tables:
        if columns(table):
            section.columns[table] = columns(table)
            section.table_descriptions[table] = table_description(table)
    return section
