"""The Geometry-between-updates and Forgetting pages (Streamlit's AppTest on the shared real results folder) show
what the stored tables hold: each pair's mean over modules, and each run's KL and loss change per text set at the
chosen window length, equal to pandas on the parquet files; the controls for window length and measure work."""

import numpy as np
import pandas as pd
import pytest

import lab_results
from test_dashboard_app import open_view, shown


def test_similarity_page_shows_each_pairs_means_over_modules(lab_results_folder, monkeypatch):
    app = open_view(lab_results_folder.results, "similarity", monkeypatch)
    table = shown(app, "modules", "grassmann_left")
    stored = pd.read_parquet(lab_results_folder.results / lab_results.LORA_RUN / "adapter_similarity.parquet")
    stored = stored[stored["note"] == ""]
    assert len(table) == stored[["first", "second"]].drop_duplicates().shape[0] == 1
    row = table.iloc[0]
    for column in ("cosine", "grassmann_left", "grassmann_right", "sign_conflict"):
        assert row[column] == pytest.approx(stored[column].mean(), rel=1e-12), column
    assert row["modules"] == stored["module"].nunique()
    assert len(app.get("image")) == 4  # over modules (the measure and the Grassmann distance), per layer, φ(i, j)
    app.selectbox[0].set_value("sign_conflict").run()  # another measure redraws without an error
    assert not app.exception and len(app.get("image")) == 4



def test_similarity_page_keeps_a_pair_only_while_both_of_its_members_are_chosen(lab_results_folder, monkeypatch):
    app = open_view(lab_results_folder.results, "similarity", monkeypatch)
    stored = pd.read_parquet(lab_results_folder.results / lab_results.LORA_RUN / "adapter_similarity.parquet")
    stored = stored[stored["note"] == ""]
    members = set(stored["first"]) | set(stored["second"])
    steps = next(m for m in app.sidebar.multiselect if m.label == "Steps")
    kept = [s for s in steps.options if f"checkpoint-{s}" in members][-1:]  # one member of the run's one pair
    steps.set_value([int(s) for s in kept]).run()
    assert not app.exception
    assert "a pair needs both of its members chosen" in " ".join(i.value for i in app.info)
    assert len(app.get("image")) == 0
    steps = next(m for m in app.sidebar.multiselect if m.label == "Steps")
    steps.set_value([int(s) for s in steps.options]).run()  # both members again: the pair is back
    assert not app.exception and len(shown(app, "modules", "grassmann_left")) == 1

def test_forgetting_page_shows_kl_and_loss_change_per_text_set(lab_results_folder, monkeypatch):
    app = open_view(lab_results_folder.results, "forgetting", monkeypatch)
    lengths = sorted(lab_results.SEQ_LEN)
    assert app.selectbox[0].value == lengths[-1]
    for L in (lengths[-1], lengths[0]):
        if L != app.selectbox[0].value:
            app.selectbox[0].set_value(L).run()
            assert not app.exception
        table = shown(app, "most_moved_state", "kl")
        assert set(table["seq_len"]) == {L} and set(table["text_set"]) == {"texts", "reference"}
        for run in (lab_results.LORA_RUN, lab_results.MARKUP_RUN):
            stored = pd.read_parquet(lab_results_folder.results / run / "forgetting.parquet")
            stored = stored[stored["seq_len"] == L]
            mine = table[table["run"] == run]
            assert len(mine) == len(stored)
            merged = mine.merge(stored, on=["checkpoint", "text_set"], suffixes=("", "_stored"))
            assert np.allclose(merged["kl"], merged["kl_stored"], rtol=1e-12)
            assert np.allclose(merged["loss_change"], merged["loss_change_stored"], rtol=1e-12)
            layers = pd.read_parquet(lab_results_folder.results / run / "forgetting_layers.parquet")
            for r in mine.itertuples():
                lay = layers[(layers["checkpoint"] == r.checkpoint) & (layers["text_set"] == r.text_set)
                             & (layers["seq_len"] == L)]
                assert r.most_moved_cosine_distance == pytest.approx(lay["cosine_distance"].max(), rel=1e-12)
        assert len(app.get("image")) == 2
