"""Every figure of a report draws each run in one colour, the same in every figure, and no two runs
share one: the line colours of the matplotlib figures are read back. Theory lines (Page, maxima,
controls, ceilings, √ln L) use colours outside the run palette, so any line in a palette colour is
a run's and must say which (its gid)."""

import pyarrow.parquet as pq
import pytest
from matplotlib.colors import to_rgb

import lab_results
from lab.present import colours, load
from lab.report import content


@pytest.fixture(scope="module")
def report(lab_results_folder):
    built = content.build(lab_results_folder.results)
    yield built
    built.close()


def run_lines(chart):
    palette = {tuple(round(v, 6) for v in c) for c in colours.RUN_PALETTE}
    for ax in chart.figure.axes:
        for line in ax.get_lines():
            rgb = tuple(round(v, 6) for v in to_rgb(line.get_color()))
            if rgb in palette:
                yield line, rgb


def test_one_colour_per_run_across_every_figure(report):
    charts = report.charts()
    # one headline per family that some run computed
    assert len(charts) >= 20 and len([f for f in report.findings if f.chart]) == len([s for s in report.sections if s.computed])
    seen: dict[str, set] = {}
    for chart in charts:
        for line, rgb in run_lines(chart):
            assert line.get_gid(), (chart.title, line.get_label())  # a palette colour is a run's, and says which
            seen.setdefault(line.get_gid(), set()).add(rgb)
    names = {lab_results.LORA_RUN, lab_results.MARKUP_RUN, lab_results.MERGE_RUN}
    assert set(seen) == names
    assert all(len(c) == 1 for c in seen.values()), seen  # one colour per run in every figure
    assert len({next(iter(c)) for c in seen.values()}) == len(names)  # and no two runs share one


def test_the_colours_are_the_folders_sorted_runs_like_the_dashboard(report, lab_results_folder):
    """The dashboard assigns colours with the same call over the same runs (dashboards/app.py)."""
    runs = load.runs_in(lab_results_folder.results)
    folders = [p for p in lab_results_folder.results.iterdir() if p.is_dir() and not p.name.startswith(".")]  # not .lab-cache
    expected = colours.use(sorted(p.name for p in folders), load.run_methods(runs))
    for chart in report.charts():
        for line, rgb in run_lines(chart):
            assert rgb == tuple(round(v, 6) for v in expected[line.get_gid()]), chart.title


def test_earlier_checkpoints_are_fainter_than_the_last(report):
    lora = [line for chart in report.charts() for line, _ in run_lines(chart)
            if line.get_gid() == lab_results.LORA_RUN and "checkpoint-10" in line.get_label()]
    last = [line for chart in report.charts() for line, _ in run_lines(chart)
            if line.get_gid() == lab_results.LORA_RUN and "checkpoint-20" in line.get_label()]
    assert lora and last
    assert max(l.get_alpha() for l in lora) < min(l.get_alpha() or 1.0 for l in last)


def test_runs_of_several_methods_are_ordered_by_method_and_named_with_it(report, lab_results_folder):
    """The folder holds a LoRA run and a full fine-tune: colours go in (method, name) order and every
    legend names each run with its method, as the deltas tables' kinds say."""
    methods = {}
    for folder in lab_results_folder.results.iterdir():
        if folder.name.startswith("."):
            continue  # the lab's own folders (the base cache), not runs
        table = folder / "deltas.parquet"
        methods[folder.name] = ""  # the merges run has no updates of its own: no method
        if table.exists():
            rows = pq.read_table(table, columns=["checkpoint", "kind"]).to_pandas()
            methods[folder.name] = "+".join(sorted(set(rows.loc[rows["checkpoint"] != "controls", "kind"])))
    assert sorted(set(methods.values())) == ["", "full", "lora"]
    order = sorted(methods, key=lambda name: (methods[name], name))
    palette = {tuple(round(v, 6) for v in c): i for i, c in enumerate(colours.RUN_PALETTE)}
    for chart in report.charts():
        for line, rgb in run_lines(chart):
            if line.get_gid() in order:
                assert palette[rgb] == order.index(line.get_gid()), chart.title
        labels = [t.get_text() for legend in chart.figure.legends for t in legend.get_texts()]
        for run, method in ((r, m) for r, m in methods.items() if m):
            assert run not in labels, (chart.title, labels)  # never a bare name: always with its method
            if any(line.get_gid() == run for line, _ in run_lines(chart)) and labels:
                assert f"{run} ({method})" in labels, (chart.title, labels)
