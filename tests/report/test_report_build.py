"""How a report is built fast: each table read from disk once, with the same rows as a direct read;
the families built in forked workers give the same report, PNG for PNG, as one process; a figure no
requested format shows is not drawn."""

import pyarrow.parquet as pq
import pytest

from lab.present import load
from lab.report import content


def test_reads_within_read_once_equal_direct_reads_and_open_each_file_once(lab_results_folder, monkeypatch):
    runs = load.runs_in(lab_results_folder.results)
    queries = []
    for run in runs:
        for table in run.tables():
            columns = run.columns(table)
            queries.append((run, table, None, None))
            queries.append((run, table, columns[:3] + ["not_a_column"], None))
            if "checkpoint" in columns:
                first = pq.read_table(run.table_path(table), columns=["checkpoint"]).column(0)[0].as_py()
                queries.append((run, table, None, [("checkpoint", "==", first)]))
                queries.append((run, table, columns[-2:], [("checkpoint", "in", [first, "nowhere"]),
                                                           ("not_a_column", "==", 1)]))
            if "layer" in columns:
                queries.append((run, table, ["module", "layer"], [("layer", "<", 1)]))
    direct = [load.read(*q) for q in queries]
    opened = []
    real = pq.read_table

    def counting(source, *args, **kwargs):
        opened.append(str(source))
        return real(source, *args, **kwargs)

    monkeypatch.setattr(pq, "read_table", counting)
    with load.read_once():
        cached = [load.read(*q) for q in queries]
    assert len(queries) > 40
    for q, a, b in zip(queries, direct, cached):
        assert list(a.columns) == list(b.columns), q[1:]
        assert a.reset_index(drop=True).equals(b.reset_index(drop=True)), q[1:]
    assert len(opened) == len(set(opened)) == len({(str(q[0].path), q[1]) for q in queries})


@pytest.fixture(scope="module")
def serial_and_forked(lab_results_folder):
    serial = content.build(lab_results_folder.results, workers=1)
    forked = content.build(lab_results_folder.results, workers=2)
    yield serial, forked
    serial.close()
    forked.close()


def test_families_built_in_workers_equal_those_built_here(serial_and_forked):
    serial, forked = serial_and_forked
    assert [f.findings for f in serial.findings] == [f.findings for f in forked.findings]
    assert [f.number for f in serial.findings] == [f.number for f in forked.findings]
    assert [(s.key, s.computed, s.message, s.tables, s.columns) for s in serial.sections] == \
           [(s.key, s.computed, s.message, s.tables, s.columns) for s in forked.sections]
    ours, theirs = serial.charts(), forked.charts()
    assert len(ours) == len(theirs) > 20
    assert all(c.figure is None for c in theirs)  # the workers send back PNG bytes, not figures
    for a, b in zip(ours, theirs):
        assert (a.anchor, a.title, a.caption) == (b.anchor, b.title, b.caption)
        assert a.png() == b.png(), a.anchor


def test_only_what_a_format_shows_is_drawn(lab_results_folder):
    full = content.build(lab_results_folder.results, workers=1)
    lean = content.build(lab_results_folder.results, overview=False, details=False, workers=1)
    try:
        headlines = [f.chart for f in lean.findings if f.chart is not None]
        assert lean.charts() == headlines and headlines
        for a, b in zip(full.sections, lean.sections):
            assert (b.charts, b.details) == ([], [])
            assert (b.overview_count, b.detail_count) == (len(a.charts), len(a.details))
        assert sum(s.detail_count for s in full.sections) > 0
        assert all(not s.pending for s in full.sections)
    finally:
        full.close()
        lean.close()


def test_a_charts_png_is_what_savefig_with_its_layout_engine_writes(lab_results_folder):
    """Chart.png lays a figure out once itself and draws it with the engine off, as RGB at its own zlib level;
    matplotlib's own savefig (which lays out in an extra draw, RGBA) must give the same pixels, opaque, for every
    figure of the report."""
    import io

    import numpy as np
    from PIL import Image

    def charts(report):
        every = [f.chart for f in report.findings if f.chart is not None] + [c for s in report.sections
                                                                            for c in s.charts + s.details]
        # a section showing its headline figure shares the findings' figure: savefig lays a figure out again from
        # where its last layout left it, so each figure is saved once
        once = {}
        for chart in every:
            once.setdefault(id(chart.figure), chart)
        return list(once.values())

    ours = charts(content.build(lab_results_folder.results, workers=1, overview=True, details=True))
    theirs = charts(content.build(lab_results_folder.results, workers=1, overview=True, details=True))
    assert len(ours) == len(theirs) > 10
    for a, b in zip(ours, theirs):
        buf = io.BytesIO()
        b.figure.savefig(buf, format="png", dpi=120)
        ours, theirs = Image.open(io.BytesIO(a.png(120))), Image.open(buf)
        assert (ours.mode, theirs.mode, ours.size) == ("RGB", "RGBA", theirs.size), a.title
        theirs = np.asarray(theirs)
        assert (theirs[..., 3] == 255).all(), a.title
        assert np.array_equal(np.asarray(ours), theirs[..., :3]), a.title
