"""``write_report``: the report of a results folder as self-contained HTML and/or searchable PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from lab.errors import InputError, LabError
from lab.report import content

FORMATS = ("html", "pdf")


def write_report(results_dir: str | Path, out_dir: str | Path, formats: Iterable[str] = FORMATS, *,
                 title: str | None = None) -> list[Path]:
    """The written report files (``report.html``, ``report.pdf`` in ``out_dir``) for every run in ``results_dir``.

    ``results_dir`` is a results folder holding run folders, or one run folder. Both formats carry
    the same content: provenance from each manifest, and per probe family its theory, figures,
    summary tables and column meanings (a family whose table is absent says "not computed in this run").

    >>> write_report("results", "reports/latest")          # doctest: +SKIP
    [PosixPath('reports/latest/report.html'), PosixPath('reports/latest/report.pdf')]
    """
    formats = [f.strip().lower() for f in formats if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise LabError(f"unknown report format(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}")
    results_dir = Path(results_dir)
    report = content.build(results_dir, title=title)
    if not report.runs:
        raise InputError(f"{results_dir}: no lab runs here (no */manifest.json); run `lab analyze` first")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        if "html" in formats:
            from lab.report.html import write_html

            written.append(write_html(report, out_dir / "report.html"))
        if "pdf" in formats:
            from lab.report.pdf import write_pdf

            written.append(write_pdf(report, out_dir / "report.pdf"))
    finally:
        report.close()
    return written
