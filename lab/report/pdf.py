"""The report as a PDF with real, searchable text (fpdf2 with an embedded Unicode font), for
reading: the findings first (each number a link to the headline figure it comes from), then one
section per probe family, each starting on a new page and listed in the PDF outline, with its theory,
overview figures and short tables; then the appendices: the long tables (more than
``document.LONG_TABLE`` rows) with every table's column meanings, and the provenance.

The per-run and per-module detail figures are in the HTML only (``lab report --details``); each
section says how many.
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
from lab.present.sentences import Number, Sentence
from lab.present.family import NOT_COMPUTED
from lab.report.document import LONG_TABLE, Report

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
        self._widths: dict[tuple, float] = {}

    def get_string_width(self, s: str, normalized: bool = False, markdown: bool = False) -> float:
        """fpdf's width of ``s`` in the current font, remembered: a table measures each cell twice (column
        widths, then wrapping) and the same words recur throughout, and fpdf measures character by character."""
        if normalized or markdown:
            return super().get_string_width(s, normalized, markdown)
        key = (self.font_family, self.font_style, self.font_size_pt, self.font_stretching, self.char_spacing, s)
        width = self._widths.get(key)
        if width is None:
            width = self._widths[key] = super().get_string_width(s)
        return width

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
        """Plain text wrapped at word boundaries, one ``cell`` per line: fpdf's ``multi_cell`` re-measures the
        growing line at every character, which made long paragraphs (column meanings) most of a report's time."""
        self.set_font(FONT, style, size)
        if fill:
            self.set_fill_color(*fill)
        for line in self.wrap(text, self.epw - 2 * self.c_margin):
            self.cell(0, size * 0.48, line, fill=bool(fill), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(1.5)

    def wrap(self, text: str, width: float) -> list[str]:
        """``text`` in lines no wider than ``width`` (mm) in the current font: greedy over words, each word
        measured once; a word wider than a line is cut between characters. Newlines are kept."""
        lines = []
        space = self.get_string_width(" ")
        for raw in text.split("\n"):
            line, used = "", 0.0
            for word in raw.split(" "):
                w = self.get_string_width(word)
                while w > width:  # a path or hash longer than a line
                    if line:
                        lines.append(line)
                        line, used = "", 0.0
                    cut = max(1, int(len(word) * width / w))
                    lines.append(word[:cut])
                    word = word[cut:]
                    w = self.get_string_width(word)
                if line and used + space + w > width:
                    lines.append(line)
                    line, used = word, w
                else:
                    line, used = (f"{line} {word}", used + space + w) if line else (word, w)
            lines.append(line)
        return lines

    def sentence(self, sentence: Sentence, link: int | None, figure: int | None, size: float = 8.5) -> None:
        """A finding as a bullet: its numbers in bold, each a link to the figure it comes from.

        Laid out here, word by word, and drawn one ``cell`` per run of one style on a line: fpdf's ``write``
        re-measures the growing line at every character (the findings were ~40 % of writing the PDF)."""
        height = size * 0.48
        plain = "B" if sentence.run is None else ""
        pieces = [("• ", plain, None)]
        for part in sentence.parts:
            if isinstance(part, Number):  # one piece: a number is never split across lines
                pieces.append((part.text, "B", link))
            else:
                pieces.append((str(part), plain, None))
        if figure is not None:
            pieces.append((f" (Figure {figure})", "I", None))
        margin, self.c_margin = self.c_margin, 0
        try:
            for i, line in enumerate(self._lines(self._words(pieces), size)):
                if i:
                    self.ln(height)
                for text, style, target in line:
                    self.set_font(FONT, style, size)
                    if target is not None:
                        self.set_text_color(26, 79, 181)
                    self.cell(self.get_string_width(text), height, text, link=target if target is not None else "")
                    self.set_text_color(0)
        finally:
            self.c_margin = margin
        self.ln(height + 1.2)

    @staticmethod
    def _words(pieces: list[tuple[str, str, int | None]]) -> list[tuple[bool, list[tuple[str, str, int | None]]]]:
        """The pieces (text, style, link) as words: (whether a space comes before it, its pieces). Plain text is
        cut at its spaces; a piece with a link (a number) is kept whole, glued to the text it touches."""
        words: list[tuple[bool, list]] = []
        space, glue = False, False
        for text, style, target in pieces:
            chunks = [text] if target is not None else text.split(" ")
            for j, chunk in enumerate(chunks):
                if j:  # a space between two chunks
                    space, glue = True, False
                if not chunk:
                    continue
                if glue and words:
                    words[-1][1].append((chunk, style, target))
                else:
                    words.append((space, [(chunk, style, target)]))
                space, glue = False, True
        return words

    def _lines(self, words: list[tuple[bool, list]], size: float) -> list[list[tuple[str, str, int | None]]]:
        """The words in lines that fit from the current x to the right margin (then the full width), greedy; each
        line as runs (text, style, link) of one style and link, a space ending the run before it."""
        lines: list[list] = [[]]
        right = self.w - self.r_margin
        room, used = right - self.get_x(), 0.0

        def width(text: str, style: str) -> float:
            self.set_font(FONT, style, size)
            return self.get_string_width(text)

        for space, pieces in words:
            w = sum(width(text, style) for text, style, _ in pieces)
            gap = width(" ", lines[-1][-1][1]) if space and lines[-1] else 0.0
            if lines[-1] and used + gap + w > room:
                lines.append([])
                room, used, gap = self.epw, 0.0, 0.0
            line = lines[-1]
            if gap:
                text, style, target = line[-1]
                line[-1] = (text + " ", style, target) if target is None else line[-1]
                if target is not None:
                    line.append((" ", style, None))
            for text, style, target in pieces:
                if line and line[-1][1:] == (style, target) and target is None:
                    line[-1] = (line[-1][0] + text, style, target)
                else:
                    line.append((text, style, target))
            used += gap + w
        return lines

    def table_block(self, block: TableBlock, size: float = 6.5, line: float = 3.2, pad: float = 1.0) -> None:
        """A table with a shaded header row repeated on every page it spans: columns as wide as their widest
        cell, shrunk in proportion when they do not fit, cells wrapped with :meth:`wrap` (fpdf's own tables
        lay out every cell with ``multi_cell``, which cost seconds per report)."""
        if not block.rows:
            return
        if block.title:
            self.paragraph(block.title, size=9, style="B")
        self.set_font(FONT, "B", size)
        widths = [self.get_string_width(h) for h in block.header]
        self.set_font(FONT, "", size)
        for row in block.rows:
            widths = [max(w, self.get_string_width(c)) for w, c in zip(widths, row)]
        widths = [w + 2 * pad + 0.5 for w in widths]
        if sum(widths) > self.epw:  # shrink the wide columns first: each keeps at least its share of an even split
            floor = self.epw / len(widths) * 0.6
            extra = sum(max(0.0, w - floor) for w in widths)
            over = sum(widths) - self.epw
            widths = [w - over * max(0.0, w - floor) / extra if extra else self.epw / len(widths) for w in widths]

        def draw(cells: list[str], style: str, fill: bool) -> None:
            self.set_font(FONT, style, size)
            wrapped = [self.wrap(str(c), w - 2 * pad) for c, w in zip(cells, widths)]
            height = max(len(lines) for lines in wrapped) * line + 0.6
            if self.will_page_break(height):
                self.add_page()
                if not fill:  # the header again on the new page
                    draw(block.header, "B", True)
                    self.set_font(FONT, style, size)
            x, y = self.l_margin, self.get_y()
            self.set_fill_color(240, 240, 243)
            # each line of a cell placed where ``cell`` would put it (after its c_margin, on the baseline of a line
            # ``line`` high), with ``text``: a table is thousands of cells, and ``cell`` is ~4x the CPU of ``text``
            baseline = 0.3 + 0.5 * line + 0.3 * self.font_size
            for lines, w in zip(wrapped, widths):
                self.rect(x, y, w, height, style="DF" if fill else "D")
                for i, text in enumerate(lines):
                    if text:
                        self.text(x + pad + self.c_margin, y + baseline + i * line, text)
                x += w
            self.set_xy(self.l_margin, y + height)

        self.set_draw_color(200)
        self.set_line_width(0.1)
        draw(block.header, "B", True)
        for row in block.rows:
            draw(row, "", False)
        self.set_draw_color(0)
        self.ln(1)
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


APPENDIX_TABLES = "Appendix: long tables and column meanings"


def _first_rows(block: TableBlock, rows: int) -> TableBlock:
    """The table's first ``rows`` rows, its caption saying how many the HTML has."""
    caption = f"{block.caption} (the first {rows} of its {len(block.rows)} rows in report.html)".strip()
    return TableBlock(block.title, block.header, block.rows[:rows], caption)


def _pointers(section, headline: int | None) -> str:
    """Where the rest of a family's content is: its headline figure, the long tables, the HTML's details."""
    parts = [f"Headline figure: Figure {headline}, with the findings." if headline else ""]
    long = section.long_tables()
    if long:
        parts.append(f"{len(long)} long table(s) ({', '.join(b.title for b in long)}): in the appendix "
                     f"“{APPENDIX_TABLES}” and in report.html.")
    if section.detail_count:
        parts.append(f"{section.detail_count} per-run and per-module figure(s): in report.html written with "
                     "`lab report --details`, and in the dashboard.")
    parts.append("Column meanings: in the appendix.")
    return " ".join(p for p in parts if p)


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
    headlines = {f.findings.key: f.number for f in report.findings if f.chart is not None}
    for section in report.sections:
        pdf.add_page()
        pdf.heading(section.title, size=14)
        pdf.paragraph(section.theory, size=8.5, fill=(240, 244, 250))
        if not section.computed:
            pdf.paragraph(f"{section.title}: {NOT_COMPUTED}.", size=10, style="B", fill=(255, 246, 229))
            continue
        if section.message:
            pdf.paragraph(section.message, size=9, style="B", fill=(255, 246, 229))
        pdf.paragraph(_pointers(section, headlines.get(section.key)), size=8, style="I")
        for chart in section.charts:
            pdf.chart(chart.png(dpi), chart.title, chart.caption)
        for block in section.body_tables():
            pdf.table_block(block)
    pdf.add_page()
    pdf.heading(APPENDIX_TABLES, size=14)
    pdf.paragraph(f"Tables longer than {LONG_TABLE} rows (their first {LONG_TABLE} rows; report.html has every row), "
                  "then the meaning of every column, by family.", size=8.5)
    for section in report.sections:
        if not section.columns and not section.long_tables():
            continue
        pdf.heading(section.title, size=11, level=1)
        for block in section.long_tables() if section.computed else []:
            pdf.table_block(_first_rows(block, LONG_TABLE))
        for table, cols in section.columns.items():
            pdf.paragraph(f"Columns of {table}: {section.table_descriptions.get(table, '')}", size=8, style="B")
            pdf.paragraph("\n".join(f"{name}: {meaning}" for name, meaning in cols), size=7)
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
