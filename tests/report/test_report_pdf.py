"""The PDF report: searchable text with the run names and metric names, one outlined section per
probe family starting on its own page, and the same "not computed" notices as the HTML; long tables
and column meanings in an appendix, so the body's length follows its figures, not the tables."""

import os
import shutil
import subprocess

import pytest
from pypdf import PdfReader

import lab_results
from lab.present.families import families
from lab.present.family import NOT_COMPUTED
from lab.report.pdf import APPENDIX_TABLES


@pytest.fixture(scope="module")
def reader(written_report):
    return PdfReader(written_report[1])


def _page_texts(reader):
    return [" ".join((page.extract_text() or "").split()) for page in reader.pages]


def test_pdf_text_is_searchable_with_run_and_metric_names(reader):
    text = " ".join(_page_texts(reader))
    for name in (lab_results.LORA_RUN, lab_results.MARKUP_RUN, lab_results.MARKUP_CHECKPOINT):
        assert name in text
    for metric in ("entropy", "page_entropy", "max_entropy", "effective_rank", "stable_rank", "energy_rank_90",
                   "fro_norm", "rank_bound"):
        assert metric in text, metric


def test_every_family_is_an_outlined_section_starting_its_own_page(reader):
    outline = {item.title: reader.get_destination_page_number(item)
               for item in reader.outline if not isinstance(item, list)}
    titles = ["Findings"] + [f.title for f in families()] + [APPENDIX_TABLES, "Appendix: provenance"]
    assert list(outline) == titles
    pages = [outline[t] for t in titles]
    assert pages == sorted(pages) and len(set(pages[1:])) == len(families()) + 2
    assert outline["Findings"] == 0  # findings first, provenance last
    texts = _page_texts(reader)
    for family in families():
        assert texts[outline[family.title]].startswith(family.title), family.title
    assert texts[outline["Appendix: provenance"]].startswith("Appendix: provenance")
    # findings, each family, the appendix; the computed families with figures take more than a page
    assert len(reader.pages) >= 1 + len(families()) + 2


def test_absent_tables_say_not_computed_on_their_page(reader, lab_results_folder):
    outline = {item.title: reader.get_destination_page_number(item)
               for item in reader.outline if not isinstance(item, list)}
    texts = _page_texts(reader)
    runs = [p for p in lab_results_folder.results.iterdir() if p.is_dir()]
    for family in families():
        on_disk = any(os.path.exists(run / f"{family.tables[0]}.parquet") for run in runs)
        assert (NOT_COMPUTED in texts[outline[family.title]]) == (not on_disk), family.key


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (Debian poppler-utils) is not installed")
def test_poppler_extracts_the_same_words(written_report):
    """A second, independent text extractor (poppler) finds the run names too."""
    out = subprocess.run(["pdftotext", "-layout", str(written_report[1]), "-"], capture_output=True, text=True, check=True, timeout=120)
    assert lab_results.LORA_RUN in out.stdout and "onerror=alert(1)" in out.stdout


def test_long_tables_and_column_meanings_are_in_the_appendix_not_the_body(lab_results_folder, tmp_path, monkeypatch):
    """Each table longer than LONG_TABLE rows (4 here, so that the small fixture has some) is in the PDF's
    appendix, where its family has an outline entry, and not in the body; the body's pages are bounded by
    its figures and short tables."""
    from lab.report import content, document, write_report

    monkeypatch.setattr(document, "LONG_TABLE", 4)
    (pdf,) = write_report(lab_results_folder.results, tmp_path, ["pdf"], workers=1)
    reader = PdfReader(pdf)
    report = content.build(lab_results_folder.results, details=False)
    try:
        outline = {item.title: reader.get_destination_page_number(item)
                   for item in reader.outline if not isinstance(item, list)}
        appendix = outline[APPENDIX_TABLES]
        children = [item for entry in reader.outline if isinstance(entry, list) for item in entry]
        in_appendix = {item.title for item in children
                       if appendix <= reader.get_destination_page_number(item) < outline["Appendix: provenance"]}
        texts = _page_texts(reader)
        body, back = " ".join(texts[:appendix]), " ".join(texts[appendix:])
        long = [s for s in report.sections if s.computed and s.long_tables()]
        assert long, "the fixture should have a table longer than 4 rows"
        for section in long:
            assert section.title in in_appendix, section.key
            for block in section.long_tables():  # in the body only where the section points to the appendix
                assert body.count(block.title) == 1 and block.title in back, (section.key, block.title)
            assert all(len(b.rows) <= 4 for b in section.body_tables())
        assert "Columns of deltas:" not in body and "Columns of deltas:" in back
        figures = sum(f.chart is not None for f in report.findings) + sum(len(s.charts) for s in report.sections)
        short_rows = sum(len(b.rows) for s in report.sections for b in s.body_tables())
        # a page per figure at most (two fit), one page per family, a page per 30 short-table rows
        assert appendix <= 1 + figures + len(report.sections) + short_rows // 30
    finally:
        report.close()


def test_findings_keep_their_words_and_each_number_links_to_its_figure(lab_results_folder, written_report, reader):
    """The findings are laid out word by word (not with fpdf's write): pypdf's text of the findings pages holds
    every sentence's words in order, and every number is a link annotation inside the page's margins that jumps
    to the page where its headline figure is."""
    import re

    from lab.present import load
    from lab.present.findings import summarize
    from lab.present.sentences import Number

    found = summarize(load.runs_in(lab_results_folder.results))
    outline = {item.title: reader.get_destination_page_number(item)
               for item in reader.outline if not isinstance(item, list)}
    first_section = min(outline[f.title] for f in families())
    text = " ".join(_page_texts(reader)[:first_section])
    numbers, at = [], 0
    for family in found:
        for sentence in family.sentences:
            for word in sentence.plain().split():
                at = text.find(word, at)
                assert at >= 0, (family.key, word)
            numbers += [p.text for p in sentence.parts if isinstance(p, Number)]
    links, refs = [], [page.indirect_reference.idnum for page in reader.pages]
    for page in reader.pages[:first_section]:
        width = float(page.mediabox.width)
        for annot in page.get("/Annots") or []:
            annot = annot.get_object()
            if annot.get("/Subtype") != "/Link":
                continue
            x0, _, x1, _ = (float(v) for v in annot["/Rect"])
            assert 0 < x0 < x1 < width, annot["/Rect"]
            dest = annot.get("/Dest")  # [page, /XYZ, left, top, zoom]
            links.append(refs.index(dest[0].idnum) if dest is not None else None)
    assert len(links) == len(numbers) > 0
    assert all(page is not None and page < first_section for page in links)
    assert re.search(r"\(Figure 1\)", text)
