"""``lab report``: write the HTML and/or PDF report of a results folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def report_command(
    results_dir: Annotated[Path, typer.Argument(
        help="Results folder written by `lab analyze` (holding one folder per run), or a single run folder.")] = Path("results"),
    formats: Annotated[str, typer.Option(
        "--format", "-f", help="Comma-separated formats to write: html (self-contained, figures embedded), "
                               "pdf (same content, searchable text), or html,pdf.")] = "html,pdf",
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder to write report.html / report.pdf into (created if missing).")] = Path("reports"),
    title: Annotated[Optional[str], typer.Option(
        help="Report title (default: 'lab report: ' and the run names).")] = None,
) -> None:
    """Write a report of every run in RESULTS_DIR: provenance, figures with their theory baselines, tables."""
    from lab.report.write import write_report

    for path in write_report(results_dir, out, formats.split(","), title=title):
        typer.echo(str(path))
