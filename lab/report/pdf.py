"""The report as a PDF with real, searchable text (fpdf2 with an embedded Unicode font),
the same content as the HTML: the findings first (each number a link to the headline figure it
comes from), then one section per probe family, each starting on a new page and listed in the PDF
outline, then the provenance appendix.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from PIL import Image

from lab.present.blocks import TableBlock
from lab.present.figures.common import DPI
from lab.present.findings import Number, Sentence
from lab.present.theory import NOT_COMPUTED
from lab.report.document import Report

# DejaVu ships with matplotlib, which lab depends on: Unicode text (Δ, σ, ‖, √, ≤) without a download.
FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONT = "DejaVu"


class _Document(FPDF):
    def __init__(self, title: str):
        super().__init__(orientation="P", unit="mm", format="A4")
        self.doc_title = title
        self.add_font(FONT, "", str(FONT_DIR / "DejaVuSans.ttf"))
        self.add_font(FONT, "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
        self.add_font(FONT, "I", str(FONT_DIR / "DejaVuSans-Oblique.ttf"))
        self.set_auto_page_break(auto=True, margin=15)
        self.set_title(title)
        self.set_creator("lab")

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font(FONT, "", 7)
        self.set_text_color(120)
        self.cell(0, 5, f"{self.doc_title[:90]} · page {self.page_no()}", align="C")
        self.set_text_color(0)

    # -- blocks -------------------------------------------------------------------------------

    def heading(self, text: str, size: float = 15, level: int | None = 0) -> None:
        if level is not None:
            self.start_section(text, level=level)
        self.set_font(FONT, "B", size)
        self.multi_cell(0, size * 0.5, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(1.5)

    def paragraph(self, text: str, size: float = 9, style: str = "", fill: tuple[int, int, int] | None = None) -> None:
        self.set_font(FONT, style, size)
        if fill:
            self.set_fill_color(*fill)
        self.multi_cell(0, size * 0.48, text, fill=bool(fill), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(1.5)

    def sentence(self, sentence: Sentence, link: int | None, figure: int | None, size: float = 8.5) -> None:
        """A finding as a bullet: its numbers in bold, each a link to the figure it comes from."""
        height = size * 0.48
        self.set_font(FONT, "B" if sentence.run is None else "", size)
        self.write(height, "• ")
        for part in sentence.parts:
            if isinstance(part, Number):
                self.set_font(FONT, "B", size)
                self.set_text_color(26, 79, 181)
                if self.get_string_width(part.text) > self.w - self.r_margin - self.get_x():
                    self.ln(height)  # a number is never split across lines
                self.write(height, part.text, link=link if link is not None else "")
                self.set_text_color(0)
                self.set_font(FONT, "B" if sentence.run is None else "", size)
            else:
                self.write(height, str(part))
        if figure is not None:
            self.set_font(FONT, "I", size)
            self.write(height, f" (Figure {figure})")
        self.ln(height + 1.2)

    def table_block(self, block: TableBlock) -> None:
        if not block.rows:
            return
        if block.title:
            self.paragraph(block.title, size=9, style="B")
        self.set_font(FONT, "", 6.5)
        with self.table(text_align="LEFT", line_height=3.2, first_row_as_headings=True,
                        headings_style=_headings_style()) as table:
            table.row(block.header)
            for row in block.rows:
                table.row([_breakable(cell) for cell in row])
        if block.caption:
            self.paragraph(block.caption, size=7, style="I")
        self.ln(1)

    def chart(self, png: bytes, title: str, caption: str, link: int | None = None, max_height: float = 115) -> None:
        with Image.open(io.BytesIO(png)) as im:
            aspect = im.height / im.width
        width = min(0.85 * self.epw, max_height / aspect)  # two charts fit on a page; tall heatmaps stay on one
        height = width * aspect
        if self.will_page_break(height + 14):
            self.add_page()
        if link is not None:  # where the findings' numbers jump to
            self.set_link(link, y=self.get_y(), page=self.page)
        self.image(io.BytesIO(png), w=width, x=self.l_margin + (self.epw - width) / 2)
        self.paragraph(title, size=8.5, style="B")
        self.paragraph(caption, size=8)
        self.ln(2)


def _headings_style():
    from fpdf.fonts import FontFace

    return FontFace(family=FONT, emphasis="BOLD", fill_color=(240, 240, 243))


def _breakable(text: str) -> str:
    """Long unbroken strings (paths, hashes) get break opportunities so table cells can wrap them."""
    return text.replace("/", "/\u200b") if len(text) > 30 else text


def write_pdf(report: Report, path: str | Path, dpi: int = DPI) -> Path:
    """Write the report as a PDF at ``path`` and return the path: the findings with their headline
    figures first, then one section per family, then the provenance appendix."""
    from lab import __version__

    pdf = _Document(report.title)
    pdf.add_page()
    pdf.heading(report.title, size=17, level=None)
    pdf.paragraph(f"Generated {report.generated} by lab {__version__} from {report.results_dir}. "
                  f"{len(report.runs)} run(s). Provenance (inputs with sha256, options, versions) is in the appendix.",
                  size=8.5)
    pdf.heading("Findings", size=14)
    if not report.findings:
        pdf.paragraph("No table in these runs has findings to report.", size=10, style="B", fill=(255, 246, 229))
    for finding in report.findings:
        chart = finding.chart
        link = pdf.add_link() if chart is not None else None
        pdf.heading(finding.findings.title, size=11, level=1)
        for sentence in finding.findings.sentences:
            pdf.sentence(sentence, link, finding.number if chart is not None else None)
        if chart is not None:
            pdf.ln(1)
            # the first figure shrinks (down to 60 mm) to stay on the first page, beside the first findings
            room = pdf.h - pdf.b_margin - pdf.get_y() - 18
            height = max(60.0, min(95.0, room)) if finding.number == 1 else 95.0
            pdf.chart(chart.png(dpi), f"Figure {finding.number}: {chart.title}", chart.caption, link=link,
                      max_height=height)
    for section in report.sections:
        pdf.add_page()
        pdf.heading(section.title, size=14)
        pdf.paragraph(section.theory, size=8.5, fill=(240, 244, 250))
        if not section.computed:
            pdf.paragraph(f"{section.title}: {NOT_COMPUTED}.", size=10, style="B", fill=(255, 246, 229))
        else:
            if section.message:
                pdf.paragraph(section.message, size=9, style="B", fill=(255, 246, 229))
            for chart in section.charts:
                pdf.chart(chart.png(dpi), chart.title, chart.caption)
            for block in section.tables:
                pdf.table_block(block)
        for table, cols in section.columns.items():
            pdf.paragraph(f"Columns of {table}: {section.table_descriptions.get(table, '')}", size=8.5, style="B")
            for name, meaning in cols:
                pdf.paragraph(f"{name}: {meaning}", size=7.5)
    pdf.add_page()
    pdf.heading("Appendix: provenance", size=14)
    pdf.table_block(report.overview)
    for run in report.runs:
        pdf.heading(f"Run {run.name}: {run.status}", size=11, level=1)
        for block in (run.summary, run.inputs, run.tables, run.options, run.versions):
            pdf.table_block(block)
    path = Path(path)
    pdf.output(str(path))
    return path
