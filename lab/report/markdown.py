"""The report as Markdown with its figures as PNG files beside it, for a paper draft, an issue or a
notebook: the same findings (each number a link to its figure), headline figures, theory and tables
as the HTML, with provenance summarised in an appendix. It embeds the headline figures only (one per
family): each section says how many overview and per-run figures the HTML and the PDF add, and
``write_report`` draws none of those for a Markdown-only report.

``report.md`` links its figures as ``figures/NN-ANCHOR.png``; each figure is preceded by an
``<a id="ANCHOR">`` so the numbers' links work where HTML anchors are rendered (GitHub, Jupyter).
"""

from __future__ import annotations

from pathlib import Path

from lab.present.blocks import TableBlock
from lab.present.figures.common import DPI, Chart
from lab.present.sentences import escape_markdown, markdown
from lab.present.family import NOT_COMPUTED
from lab.report.document import Report

FIGURES = "figures"


_cell = escape_markdown  # table cells and inline text: names come from files


def _table(block: TableBlock) -> list[str]:
    if not block.rows:
        return []
    lines = [f"**{_cell(block.title)}**", ""] if block.title else []
    lines.append("| " + " | ".join(_cell(h) for h in block.header) + " |")
    lines.append("|" + "---|" * len(block.header))
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
    if block.caption:
        lines += ["", f"*{_cell(block.caption)}*"]
    return lines + [""]


def _figure(chart: Chart, folder: Path, index: int, label: str, dpi: int) -> list[str]:
    name = f"{index:02d}-{chart.anchor or 'figure'}.png"
    (folder / name).write_bytes(chart.png(dpi))
    return [f'<a id="{chart.anchor}"></a>', "", f"![{_cell(chart.title)}]({FIGURES}/{name})", "",
            f"*{_cell(label)}* {_cell(chart.caption)}", ""]


def render(report: Report, out_dir: Path, dpi: int = DPI) -> str:
    """The report as Markdown; its figures are written to ``out_dir/figures``."""
    folder = Path(out_dir) / FIGURES
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    lines = [f"# {_cell(report.title)}", "",
             f"Generated {report.generated} from `{report.results_dir}`; {len(report.runs)} run(s). "
             "Provenance is in the appendix.", "", "## Findings", ""]
    for finding in report.findings:
        lines += [f"### {_cell(finding.findings.title)}", ""]
        for sentence in finding.findings.sentences:
            ref = f" (Figure {finding.number})" if finding.chart is not None else ""
            lead = "Across runs: " if sentence.run is None else ""
            lines.append(f"- {lead}{markdown(sentence)}{ref}")
        lines.append("")
        if finding.chart is not None:
            count += 1
            lines += _figure(finding.chart, folder, count, f"Figure {finding.number}: {finding.chart.title}.", dpi)
    for section in report.sections:
        lines += [f"## {_cell(section.title)}", "", f"> {_cell(section.theory)}", ""]
        if not section.computed:
            lines += [f"**{_cell(section.title)}: {NOT_COMPUTED}.**", ""]
            continue
        if section.message:
            lines += [f"**{_cell(section.message)}**", ""]
        if section.overview_count or section.detail_count:
            lines += [f"*{section.overview_count} overview figure(s) in report.html and report.pdf; "
                      f"{section.detail_count} per-run and per-module figure(s) in report.html with "
                      "`lab report --details`.*", ""]
        for block in section.tables:
            lines += _table(block)
    lines += ["## Appendix: provenance", ""] + _table(report.overview)
    for run in report.runs:
        lines += [f"### Run {_cell(run.name)}: {run.status}", ""]
        for block in (run.summary, run.inputs, run.options, run.versions):
            lines += _table(block)
    return "\n".join(lines).rstrip() + "\n"


def write_markdown(report: Report, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``report.md`` at ``path`` with its PNGs in ``figures/`` beside it; returns the path."""
    path = Path(path)
    path.write_text(render(report, path.parent, dpi), encoding="utf-8")
    return path
