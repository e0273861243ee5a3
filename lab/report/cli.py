"""``lab report``: write the HTML, PDF and/or Markdown report of a results folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def report_command(
    results_dir: Annotated[Path, typer.Argument(
        help="Results folder written by `lab analyze` (holding one folder per run), or a single run folder.")] = Path("results"),
    formats: Annotated[str, typer.Option(
        "--format", "-f", help="Comma-separated formats to write: html (self-contained, figures embedded), "
                               "pdf (same content, searchable text), md (Markdown with the figures as PNGs "
                               "in figures/ beside it, for a paper draft or an issue), e.g. html,pdf,md.")] = "html,pdf",
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder to write report.html / report.pdf / report.md into (created if missing).")] = Path("reports"),
    title: Annotated[Optional[str], typer.Option(
        help="Report title (default: 'lab report: ' and the run names).")] = None,
    details: Annotated[bool, typer.Option(
        "--details/--no-details", help="Also draw each family's per-run and per-module figures into the HTML "
                                       "(dozens on several runs; the dashboard shows them interactively).")] = False,
    workers: Annotated[Optional[int], typer.Option(
        min=1, help="Processes that render the figures (default: the cores available to lab).")] = None,
    cache: Annotated[bool, typer.Option(
        "--cache/--no-cache", help="Keep the report's content (findings, figures, tables) in RESULTS_DIR/.lab-cache/report "
                                   "and reuse it when the same files, options and code are reported again.")] = True,
) -> None:
    """Write a report of every run in RESULTS_DIR: findings first, figures with their theory baselines, tables, provenance."""
    from lab.report.write import write_report

    for path in write_report(results_dir, out, formats.split(","), title=title, details=details, workers=workers,
                             cache=cache):
        typer.echo(str(path))
