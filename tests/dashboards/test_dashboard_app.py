"""Every dashboard view runs without an exception (Streamlit's AppTest) on real runs from
lab.analyze, on a run with tables missing, and on a folder without runs; the views show what the
tables hold and say "not computed in this run" exactly where a table is absent. The page list is
the schema's: a family whose table is declared has a page, one whose table is not has none. On every
page the numbers shown (update norms and table sizes, valley entropies, stable and effective ranks)
equal numpy's on the builder's reference updates and the stored tables."""

import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
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


# --- the numbers each page shows, against numpy on the reference updates and the stored tables ------------

def shown(app, *columns) -> pd.DataFrame:
    """The one dataframe on the page that has these columns."""
    frames = [d.value for d in app.dataframe if set(columns) <= set(d.value.columns)]
    assert len(frames) == 1, [list(d.value.columns) for d in app.dataframe]
    return frames[0]


def reference_delta(results, row) -> np.ndarray:
    """ΔW of a row from the builder's own reference (PEFT's factors, or W_ft − W_base from the files)."""
    if row.run == lab_results.LORA_RUN:
        return results.lora_deltas[(row.checkpoint, row.module)]
    return results.full_deltas[row.module]


def test_runs_page_shows_the_update_sizes_and_table_sizes(lab_results_folder, monkeypatch):
    app = open_view(lab_results_folder.results, "runs", monkeypatch)
    deltas = shown(app, "fro_norm", "kind")
    assert len(deltas) == len(lab_results_folder.lora_deltas) + len(lab_results_folder.full_deltas)
    for row in deltas.itertuples():
        assert row.fro_norm == pytest.approx(np.linalg.norm(reference_delta(lab_results_folder, row)), rel=1e-9), row.module
    # the row counts of the run shown in "Run details", read back from its parquet files
    name = next(s for s in app.selectbox if s.label == "Run details").value
    counts = shown(app, "table", "rows").set_index("table")["rows"].to_dict()
    folder = lab_results_folder.results / name
    assert counts == {p.stem: pq.ParquetFile(p).metadata.num_rows for p in folder.glob("*.parquet")}


def test_entanglement_page_shows_the_valley_entropies(lab_results_folder, monkeypatch):
    app = open_view(lab_results_folder.results, "entanglement", monkeypatch)
    valleys = shown(app, "valley_entropy", "valley_page")
    assert len(valleys) == len(lab_results_folder.lora_deltas) + len(lab_results_folder.full_deltas)
    for row in valleys.itertuples():
        delta = reference_delta(lab_results_folder, row)
        assert row.valley_entropy == pytest.approx(lab_results.entropy_of_squared_singular_values(delta), abs=1e-9), row.module
        assert row.valley_page == pytest.approx(page_entropy(*delta.shape), rel=1e-12)  # the row|column cut: rows | cols
        assert row.depth == pytest.approx(row.valley_page - row.valley_entropy, abs=1e-12)


def test_spectra_page_shows_the_stable_and_effective_ranks(lab_results_folder, monkeypatch):
    app = open_view(lab_results_folder.results, "spectra", monkeypatch)
    spectra = shown(app, "stable_rank", "effective_rank")
    assert len(spectra) == len(lab_results_folder.lora_deltas) + len(lab_results_folder.full_deltas)
    for row in spectra.itertuples():
        s = np.linalg.svd(reference_delta(lab_results_folder, row), compute_uv=False)
        assert row.stable_rank == pytest.approx(np.sum(s**2) / s[0] ** 2, rel=1e-9), row.module
        assert row.effective_rank == pytest.approx(np.exp(lab_results.shannon_entropy(s / s.sum())), rel=1e-9)


def page_entropy(d_a: int, d_b: int) -> float:
    """Page's mean entropy (d_A ≤ d_B), summed term by term here rather than taken from lab.probes.page."""
    d_a, d_b = sorted((d_a, d_b))
    return float(np.sum(1.0 / np.arange(d_b + 1, d_a * d_b + 1)) - (d_a - 1) / (2 * d_b))
