"""The HTML report of real runs: self-contained, escaped, and carrying the right numbers,
checked against the files on disk, PEFT's own updates and numpy's SVD."""

import base64
import hashlib
import io
import os
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

import lab_results
from lab.present.families import families
from lab.present.family import NOT_COMPUTED
from lab.store.schema import TABLES


class Collect(HTMLParser):
    """Tags with their attributes, table cells, and text, as a browser's parser sees them."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.cells: list[str] = []
        self.text: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_cell = tag in ("td", "th")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_cell:
            self.cells.append(data.strip())


@pytest.fixture(scope="module")
def parsed(written_report):
    html, _ = written_report
    parser = Collect()
    parser.feed(html.read_text(encoding="utf-8"))
    return parser


def test_html_is_self_contained_with_real_png_figures(parsed):
    assert not [t for t, a in parsed.tags if t in ("script", "link", "iframe")]
    images = [a["src"] for t, a in parsed.tags if t == "img"]
    assert len(images) >= 8  # norms (2 runs), valley, profiles, heatmaps, steps, ranks, energy, σ
    for src in images:
        assert src.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 100
    # an embedded image's base64 can hold the letters "http" by chance (about one in three reports): only
    # addresses that are not data: URIs would load anything
    assert not [a for t, a in parsed.tags if any(v and "http" in v and not v.startswith("data:")
                                                 for k, v in a.items() if k in ("src", "href"))]


def test_names_from_checkpoints_are_escaped(parsed, written_report):
    raw = written_report[0].read_text(encoding="utf-8")
    # a browser would have made these elements if the names were pasted in raw
    assert not [a for t, a in parsed.tags if "onerror" in a]
    assert "<script>alert(2)" not in raw and "<img src=x" not in raw
    text = "".join(parsed.text)
    assert lab_results.MARKUP_RUN in text and lab_results.MARKUP_CHECKPOINT in text  # shown as text


def test_provenance_lists_every_input_file_hash(parsed, lab_results_folder):
    text = "".join(parsed.text)
    for checkpoint, files in lab_results_folder.checkpoint_files.items():
        digest = hashlib.sha256(files[0].read_bytes()).hexdigest()
        assert digest in parsed.cells, checkpoint
        assert checkpoint in parsed.cells
    assert text.count("complete") >= 2


def test_sections_say_not_computed_exactly_for_absent_tables(parsed, lab_results_folder):
    text = " ".join(parsed.text)
    runs = [p for p in lab_results_folder.results.iterdir() if p.is_dir()]
    for family in families():
        on_disk = any(os.path.exists(run / f"{family.tables[0]}.parquet") for run in runs)
        assert (f"{family.title}: {NOT_COMPUTED}" in text) == (not on_disk), family.key


def test_column_meanings_come_from_the_schema(parsed):
    text = " ".join(parsed.text)
    for table in ("deltas", "entanglement", "spectra"):
        for column in TABLES[table].columns:
            assert column.description in text, (table, column.name)


def test_mean_update_norm_per_checkpoint_matches_peft_and_torch(parsed, lab_results_folder):
    cells = parsed.cells
    for checkpoint in ("checkpoint-10", "checkpoint-20"):
        norms = [np.linalg.norm(d) for (ck, _), d in lab_results_folder.lora_deltas.items() if ck == checkpoint]
        assert f"{np.mean(norms):.4g}" in cells, checkpoint
    full = np.mean([np.linalg.norm(d) for d in lab_results_folder.full_deltas.values()])
    assert f"{full:.4g}" in cells


def test_valley_entropy_per_role_matches_numpy_svd(parsed, lab_results_folder):
    """The report's mean entropy at the row|column cut, per role, equals −Σp ln p of σ² from numpy's SVD of PEFT's ΔW."""
    cells = parsed.cells
    for role, suffix in (("q", "q_proj"), ("v", "v_proj"), ("down", "down_proj")):
        values = [lab_results.entropy_of_squared_singular_values(d)
                  for (ck, module), d in lab_results_folder.lora_deltas.items()
                  if ck == "checkpoint-20" and module.endswith(suffix)]
        assert f"{np.mean(values):.4g}" in cells, role
