"""The report cache: a second report of the same results is the report built from the tables (same findings,
tables and PNG bytes) without summarising or drawing; a changed table, option or entry is rebuilt."""

import pickle
import re
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lab.present import load
from lab.report import cache, content, write_report

FORMATS = ["html", "pdf", "md"]
GENERATED = re.compile(r"Generated \S+")  # the time of writing: the one thing two reports of the same results differ in


@pytest.fixture
def results(lab_results_folder, tmp_path):
    """A copy of the results folder this test may write a cache into."""
    copy = tmp_path / "results"
    shutil.copytree(lab_results_folder.results, copy, ignore=shutil.ignore_patterns(".lab-cache"))
    return copy


def nothing_built(monkeypatch):
    """From here on, summarising a family or building a section fails the test."""
    def fail(*args, **kwargs):
        raise AssertionError("the report summarised or drew although its cache entry was there")

    monkeypatch.setattr(content, "_findings", fail)
    monkeypatch.setattr(content, "_section", fail)


def essence(report):
    """What a report says: findings text and numbers, figures (title, caption, PNG bytes), sections' tables and counts."""
    findings = [(f.number, f.findings.key, f.findings.title, [repr(s) for s in f.findings.sentences],
                 None if f.chart is None else (f.chart.anchor, f.chart.title, f.chart.caption, f.chart.png()))
                for f in report.findings]
    sections = [(s.key, s.title, s.computed, s.message, [(c.anchor, c.title, c.caption, c.png()) for c in s.charts],
                 [(c.anchor, c.png()) for c in s.details], [repr(b) for b in s.tables], s.overview_count,
                 s.detail_count, s.columns) for s in report.sections]
    return findings, sections


def files(folder):
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix != ".pdf":
            data = path.read_bytes()
            out[str(path.relative_to(folder))] = GENERATED.sub("", data.decode()) if path.suffix in (".md", ".html") else data
    return out


def test_a_cached_report_equals_the_uncached_one_and_neither_summarises_nor_draws(results, tmp_path, monkeypatch):
    built = essence(content.build(results, workers=1, overview=True, details=False))
    stored = essence(content.build(results, workers=1, overview=True, details=False, cache=True))
    assert list((results / cache.CACHE_DIR).glob("*-o1d0.pickle"))
    nothing_built(monkeypatch)
    again = content.build(results, workers=1, overview=True, details=False, cache=True)
    assert all(c.figure is None for c in again.charts())  # PNG bytes only: nothing was drawn
    assert essence(again) == stored == built
    assert sum(len(s.charts) for s in again.sections) > 3 and sum(f.chart is not None for f in again.findings) > 3


def test_md_after_html_and_pdf_takes_their_entry_and_writes_the_same_files(results, tmp_path, monkeypatch):
    write_report(results, tmp_path / "uncached", FORMATS, workers=1)
    write_report(results, tmp_path / "first", ["html", "pdf"], workers=2, cache=True)
    nothing_built(monkeypatch)
    write_report(results, tmp_path / "md", ["md"], workers=2, cache=True)
    write_report(results, tmp_path / "all", FORMATS, workers=2, cache=True)
    uncached = files(tmp_path / "uncached")
    assert files(tmp_path / "all") == uncached
    assert files(tmp_path / "md") == {k: v for k, v in uncached.items() if k.endswith(".md") or k.startswith("figures")}
    assert files(tmp_path / "first")["report.html"] == uncached["report.html"]


def test_a_changed_table_or_option_is_a_new_entry_and_is_rebuilt(results, monkeypatch):
    runs = load.runs_in(results)
    before = cache.address(results, runs, 120)
    assert cache.address(results, runs, 120) == before  # the same files: the same address
    assert cache.address(results, runs, 150) != before
    content.build(results, workers=1, overview=True, details=False, cache=True)
    assert cache.load(results, before, overview=True, details=True) is None  # details were not drawn
    assert cache.load(results, before, overview=False, details=False) is not None  # fewer figures: the entry serves

    # one value of one table changed: a new address, and the report computed from the new table
    run = next(r for r in runs if r.has_table("deltas"))
    path = run.table_path("deltas")
    table = pq.read_table(path)
    column = table.column("fro_norm").to_pylist()
    column[0] = column[0] * 2 + 1
    pq.write_table(table.set_column(table.schema.get_field_index("fro_norm"), "fro_norm", pa.array(column)), path)
    after = cache.address(results, load.runs_in(results), 120)
    assert after != before
    assert cache.load(results, after, overview=True, details=False) is None
    fresh = essence(content.build(results, workers=1, overview=True, details=False))
    assert essence(content.build(results, workers=1, overview=True, details=False, cache=True)) == fresh


def test_a_corrupt_or_foreign_entry_is_ignored_and_replaced(results, monkeypatch):
    built = essence(content.build(results, workers=1, overview=False, details=False))
    key = cache.address(results, load.runs_in(results), 120)
    entry = results / cache.CACHE_DIR / f"{key}-o0d0.pickle"
    entry.parent.mkdir(parents=True)
    for bad in (b"not a pickle", pickle.dumps({"format": 1, "key": key, "parts": [print]}),
                pickle.dumps({"format": 1, "key": "another", "parts": []})):
        entry.write_bytes(bad)
        assert cache.load(results, key, overview=False, details=False) is None
        assert essence(content.build(results, workers=1, overview=False, details=False, cache=True)) == built
        assert cache.load(results, key, overview=False, details=False) is not None  # rebuilt and stored again


def test_no_cache_writes_no_entry(results, tmp_path):
    done = subprocess.run([sys.executable, "-m", "lab.cli", "report", str(results), "--format", "md", "--no-cache",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert not (results / cache.CACHE_DIR).exists()
    done = subprocess.run([sys.executable, "-m", "lab.cli", "report", str(results), "--format", "md",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(list((results / cache.CACHE_DIR).glob("*.pickle"))) == 1
