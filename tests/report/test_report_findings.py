"""The reports open with the findings: in the HTML each number is a link to a figure that exists, and
the numbers are those pandas computes from the files; the PDF's first page carries the findings and a
figure; the provenance comes last (folded in the HTML); ``--format md`` writes the same findings with
the PNGs beside the Markdown."""

import re
from html.parser import HTMLParser

import pandas as pd
import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

import lab_results
from lab.present.sentences import fmt


class Links(HTMLParser):
    """Number links (<a class="num">) with their text, every element id, and the order of section ids."""

    def __init__(self):
        super().__init__()
        self.numbers: list[tuple[str, str]] = []
        self.ids: set[str] = set()
        self.sections: list[str] = []
        self._href = None
        self.details_open_in_provenance = None
        self._in_provenance = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "section":
            self.sections.append(attrs.get("id"))
            self._in_provenance = attrs.get("id") == "provenance"
        if tag == "details" and self._in_provenance and self.details_open_in_provenance is None:
            self.details_open_in_provenance = "open" in attrs
        if tag == "a" and attrs.get("class") == "num":
            self._href = attrs["href"]

    def handle_data(self, data):
        if self._href is not None:
            self.numbers.append((self._href, data))
            self._href = None


@pytest.fixture(scope="module")
def html(written_report):
    parser = Links()
    parser.feed(written_report[0].read_text(encoding="utf-8"))
    return parser


def last_rows(path) -> pd.DataFrame:
    df = pd.read_parquet(path)
    keys = df[["checkpoint", "step"]].drop_duplicates("checkpoint")
    ck = sorted(zip(keys["step"].astype(float).fillna(-1.0), keys["checkpoint"]))[-1][1]
    return df[df["checkpoint"] == ck]


def test_findings_come_first_and_provenance_last_folded(html):
    assert html.sections[0] == "findings" and html.sections[-1] == "provenance"
    assert html.details_open_in_provenance is False


def test_every_number_links_to_a_figure_that_exists(html):
    assert len(html.numbers) > 30
    for href, _ in html.numbers:
        assert href.startswith("#fig-") and href[1:] in html.ids, href


def test_linked_numbers_are_those_pandas_computes_from_the_files(html, lab_results_folder):
    folder = lab_results_folder.results
    shown = {}
    for href, text in html.numbers:
        shown.setdefault(href, []).append(text)
    deltas = last_rows(folder / lab_results.LORA_RUN / "deltas.parquet")
    assert fmt(deltas["fro_norm"].mean()) in shown["#fig-deltas"]
    valley = last_rows(folder / lab_results.LORA_RUN / "entanglement_summary.parquet")
    valley = valley[valley["source"] == "delta"]
    assert fmt(valley["valley_entropy"].mean()) in shown["#fig-entanglement"]
    ratio = last_rows(folder / lab_results.MARKUP_RUN / "thresholds.parquet")["ratio"].max()
    assert fmt(ratio) in shown["#fig-thresholds"]
    merge = pd.read_parquet(folder / lab_results.MERGE_RUN / "merge.parquet")
    assert fmt(merge.loc[merge["method"] == "svd", "rel_fro_error"].mean()) in shown["#fig-merge"]


def test_pdf_first_page_has_the_findings_and_a_figure(written_report, lab_results_folder):
    first = PdfReader(written_report[1]).pages[0]
    text = " ".join((first.extract_text() or "").split())
    assert "Findings" in text and "Updates read" in text
    deltas = last_rows(lab_results_folder.results / lab_results.LORA_RUN / "deltas.parquet")
    assert fmt(deltas["fro_norm"].mean()) in text and "(Figure 1)" in text
    assert len(first.images) >= 1
    assert "sha256" not in text.replace("with sha256", "")  # provenance tables are in the appendix, not here


def test_markdown_has_the_findings_and_its_figures_beside_it(lab_results_folder, tmp_path):
    from lab.cli import app

    result = CliRunner().invoke(app, ["report", str(lab_results_folder.results), "--format", "md", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert md.index("## Findings") < md.index("## Internal entanglement") < md.index("## Appendix: provenance")
    images = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    headlines = re.findall(r"^\*Figure (\d+): ", md, flags=re.M)  # one headline figure per family, numbered
    assert len(images) == len(headlines) >= 8 and headlines == [str(i + 1) for i in range(len(headlines))]
    assert all((tmp_path / p).stat().st_size > 1000 for p in images)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(p.split("/")[1] for p in images)
    for anchor in set(re.findall(r"\]\(#(fig-[\w-]+)\)", md)):
        assert f'<a id="{anchor}"></a>' in md, anchor
    deltas = last_rows(lab_results_folder.results / lab_results.LORA_RUN / "deltas.parquet")
    assert f"[**{fmt(deltas['fro_norm'].mean())}**](#fig-deltas)" in md
    assert not re.search(r"(?<!\\)<(img|script)", md)  # names from files are escaped: shown as text, never markup
    assert r"\<img src=x onerror=alert(1)\>" in md


def test_markdown_alone_draws_only_the_figures_it_embeds(lab_results_folder, tmp_path, monkeypatch):
    """A Markdown-only report builds one matplotlib figure per embedded (headline) figure and none of the
    sections' overview or per-run figures, which it counts for the reader instead."""
    from matplotlib.figure import Figure

    from lab.report import write_report

    built = []
    init = Figure.__init__

    def counting(self, *args, **kwargs):
        built.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "__init__", counting)
    (path,) = write_report(lab_results_folder.results, tmp_path, ["md"], workers=1)
    md = path.read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert len(built) == len(images) == len(list((tmp_path / "figures").iterdir()))
    counted = [int(n) for n in re.findall(r"\*(\d+) overview figure\(s\) in report.html and report.pdf", md)]
    assert sum(counted) > len(images)  # the sections have more figures than the Markdown drew
    from lab.report import content

    report = content.build(lab_results_folder.results, workers=1, details=False)
    headlines = {id(f.chart.figure) for f in report.findings if f.chart is not None}
    shown_again = sum(id(c.figure) in headlines for s in report.sections for c in s.charts)
    report.close()
    assert shown_again >= 2  # esd's and forgetting's sections show their headline figure
    built.clear()
    write_report(lab_results_folder.results, tmp_path / "html", ["html", "md"], workers=1)
    # the HTML adds the overview figures, but draws a section's headline figure once, for the findings
    assert len(built) == sum(counted) + len(images) - shown_again
    built.clear()
    write_report(lab_results_folder.results, tmp_path / "details", ["html"], details=True, workers=1)
    assert len(built) > sum(counted) + len(images)  # and with details the per-run and per-module ones
