"""Every dashboard view runs without an exception (Streamlit's AppTest) on real runs from
lab.analyze, on a run with tables missing, and on a folder without runs; the views show what the
tables hold and say "not computed in this run" exactly where a table is absent. The page list is
the schema's: a family whose table is declared has a page, one whose table is not has none."""

import os

import pytest
from streamlit.testing.v1 import AppTest

import dashboards
import lab_results
from dashboards import RESULTS_ENV, navigation
from lab.present.theory import BY_KEY, FAMILIES, NOT_COMPUTED
from lab.store.schema import TABLES

VIEWS = ["runs", "entanglement", "spectra"]  # views/NAME.py; families share the keys


def open_view(results, view, monkeypatch):
    monkeypatch.setenv(RESULTS_ENV, str(results))
    app = AppTest.from_file(str(dashboards.APP), default_timeout=120)
    app.run()
    if view != "runs":
        app.switch_page(f"views/{view}.py")
        app.run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def texts(app):
    return " ".join([m.value for m in app.markdown] + [i.value for i in app.info] + [t.value for t in app.title]
                    + [c.value for c in app.caption] + [w.value for w in app.warning])


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_on_real_runs(lab_results_folder, view, monkeypatch):
    app = open_view(lab_results_folder.results, view, monkeypatch)
    runs = [p for p in lab_results_folder.results.iterdir() if p.is_dir()]
    if view == "runs":  # both runs listed, with their status
        frame = app.dataframe[0].value
        assert sorted(frame["run"]) == sorted([lab_results.LORA_RUN, lab_results.MARKUP_RUN])
        assert set(frame["status"]) == {"complete"}
        assert len(app.get("image")) >= 1
        return
    family = BY_KEY[view]
    computed = any(os.path.exists(run / f"{family.tables[0]}.parquet") for run in runs)
    notice = f"{family.title}: {NOT_COMPUTED}"
    assert (notice in texts(app)) == (not computed)
    if computed:
        assert len(app.get("image")) >= 3  # profile/σ, heatmap/ranks, valley/energy


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_on_a_run_with_tables_missing(lab_results_folder, view, monkeypatch):
    app = open_view(lab_results_folder.partial, view, monkeypatch)
    if view != "runs":  # only the deltas table exists
        assert f"{BY_KEY[view].title}: {NOT_COMPUTED}" in texts(app)
        assert len(app.get("image")) == 0


@pytest.mark.parametrize("view", ["runs", "entanglement"])
def test_a_folder_without_runs_says_so(lab_results_folder, view, monkeypatch):
    app = open_view(lab_results_folder.empty, view, monkeypatch)
    assert "No lab runs" in texts(app)


def test_filters_narrow_what_the_views_read(lab_results_folder, monkeypatch):
    app = open_view(lab_results_folder.results, "entanglement", monkeypatch)
    runs = app.sidebar.multiselect[0]
    runs.set_value([lab_results.LORA_RUN]).run()
    assert not app.exception
    roles = next(m for m in app.sidebar.multiselect if m.label == "Roles")
    roles.set_value(["v"]).run()
    assert not app.exception
    module = app.selectbox[0]
    assert all(".v_proj" in m for m in module.options)
    steps = next(m for m in app.sidebar.multiselect if m.label == "Steps")
    steps.set_value([20]).run()
    assert not app.exception
    app.radio[0].set_value("side by side").run()
    assert not app.exception
    captions = " ".join(c.value for c in app.caption)
    assert "checkpoint-20" in captions and "checkpoint-10" not in captions


def test_the_pages_are_runs_and_one_per_declared_family():
    assert [v.key for v in navigation.views()] == VIEWS
    assert [v.title for v in navigation.views()][1:] == [BY_KEY[k].title for k in VIEWS[1:]]
    scripts = {p.name for p in navigation.VIEWS.glob("*.py")} - {"__init__.py"}
    assert scripts == {v.script.name for v in navigation.views()}  # no page without a family, none missing
    assert {f.key for f in FAMILIES} - {navigation.SHOWN_ON_RUNS} == set(VIEWS[1:])


def test_a_family_whose_table_is_not_declared_has_no_page(lab_results_folder, monkeypatch):
    monkeypatch.delitem(TABLES, "spectra")
    assert [v.key for v in navigation.views()] == ["runs", "entanglement"]
    app = open_view(lab_results_folder.results, "runs", monkeypatch)
    with pytest.raises(ValueError, match="Could not find a navigation page"):  # Streamlit does not know the page
        app.switch_page("views/spectra.py").run()
