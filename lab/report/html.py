"""The report as one self-contained HTML file: figures embedded as base64 PNG, no external assets.

Every string that comes from a checkpoint or a manifest (run, module and file names) goes
through Jinja2's autoescaping, so a name like ``<script>`` is shown, never run.
"""

from __future__ import annotations

import re
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from lab.present.figures.common import DPI
from lab.present.sentences import Number
from lab.present.family import NOT_COMPUTED
from lab.report.document import Report

_NUMBER = re.compile(r"^-?[\d.,]+(e[+-]?\d+)?$")


def environment() -> Environment:
    """The Jinja2 environment for lab's templates (shipped as package data of lab.report)."""
    env = Environment(loader=PackageLoader("lab.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"], default=True))
    env.tests["numeric_text"] = lambda s: bool(_NUMBER.match(str(s)))
    env.tests["number_part"] = lambda part: isinstance(part, Number)
    return env


def render(report: Report, dpi: int = DPI) -> str:
    """The report as an HTML string."""
    from lab import __version__

    images = {chart.anchor: chart.png_base64(dpi) for chart in report.charts()}
    template = environment().get_template("report.html.j2")
    return template.render(report=report, images=images, not_computed=NOT_COMPUTED, lab_version=__version__)


def write_html(report: Report, path: str | Path, dpi: int = DPI) -> Path:
    """Write the report to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    path.write_text(render(report, dpi), encoding="utf-8")
    return path
