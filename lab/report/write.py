"""``write_report``: the report of a results folder as self-contained HTML, searchable PDF and/or Markdown with PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from lab.cores import usable_cores
from lab.errors import InputError, LabError
from lab.report import content

FORMATS = ("html", "pdf", "md")
DEFAULT_FORMATS = ("html", "pdf")  # what `lab report` writes unless --format says otherwise


def write_report(results_dir: str | Path, out_dir: str | Path, formats: Iterable[str] = DEFAULT_FORMATS, *,
                 title: str | None = None, details: bool = False, workers: int | None = None,
                 cache: bool = False) -> list[Path]:
    """The written report files (``report.html``, ``report.pdf``, ``report.md`` with ``figures/``, in
    ``out_dir``) for every run in ``results_dir``.

    ``results_dir`` is a results folder holding run folders, or one run folder. Every format carries
    the findings computed from the tables with each family's headline figure, per probe family its
    theory, summary tables and column meanings (a family whose table is absent says "not computed in
    this run"), and the provenance of each run as an appendix. The HTML and the PDF add each
    family's overview figures, the HTML with ``details`` its per-run and per-module figures too
    (dozens on a results folder of several runs: most of the time of a report); the PDF keeps its
    body short by moving tables longer than ``document.LONG_TABLE`` rows and the column meanings to
    an appendix. Each figure is drawn once, only when a requested format shows it, and its PNG is
    rendered once and shared by the formats. The families are built and their figures rendered in
    ``workers`` forked processes (default: the cores available; 1: all here). With ``cache`` the
    content (findings, figures as PNG, sections) is kept in ``results_dir/.lab-cache/report`` and a
    later report of the same files, options and code (any format) reuses it (:mod:`lab.report.cache`).

    >>> write_report("results", "reports/latest")          # doctest: +SKIP
    [PosixPath('reports/latest/report.html'), PosixPath('reports/latest/report.pdf')]
    """
    formats = [f.strip().lower() for f in formats if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise LabError(f"unknown report format(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}")
    results_dir = Path(results_dir)
    # each figure is drawn only for a format that shows it: the overview figures for the HTML and
    # the PDF, the per-run and per-module ones for the HTML when asked (the Markdown embeds the headline figures)
    report = content.build(results_dir, title=title, overview=bool({"html", "pdf"} & set(formats)),
                           details=details and "html" in formats, workers=workers or usable_cores(),
                           while_waiting=lambda: _writers(formats), cache=cache)
    if not report.runs:
        raise InputError(f"{results_dir}: no lab runs here (no */manifest.json); run `lab analyze` first")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for fmt, write in _writers(formats).items():
            written.append(write(report, out_dir / f"report.{fmt}"))
    finally:
        report.close()
    return written


def _writers(formats: list[str]) -> dict:
    """The function that writes each of ``formats``, in the order given by FORMATS (imported here: the PDF's
    fpdf alone takes a good part of a second, which the report's workers leave this process time to spend)."""
    writers = {}
    for fmt in FORMATS:
        if fmt not in formats:
            continue
        if fmt == "html":
            from lab.report.html import write_html as writer
        elif fmt == "pdf":
            from lab.report.pdf import write_pdf as writer
        else:
            from lab.report.markdown import write_markdown as writer
        writers[fmt] = writer
    return writers
