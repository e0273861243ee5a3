"""Every dashboard view runs without an exception (Streamlit's AppTest) on real runs from
lab.analyze and lab merge, on a run with tables missing, and on a folder without runs; the views show
what the tables hold and say "not computed in this run" exactly where a table is absent. The page
list is the schema's: the findings (landing page), Runs, and one page per family whose table is
declared. On every page the numbers shown (findings, update norms and table sizes, valley entropies,
stable and effective ranks, attention fits and no-hair, threshold ratios, effective units, cross-term
and merge errors) equal numpy's or pandas' on the builder's reference updates and the stored tables."""

import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

import dashboards
import lab_results
from dashboards import RESULTS_ENV, navigation
from lab.present.families import BUILTIN, by_key, registered
from lab.present.family import NOT_COMPUTED
from lab.store.schema import TABLES

FAMILY_VIEWS = [f.key for f in BUILTIN if not f.on_runs_page]  # one page per family, drawn from its record
VIEWS = ["findings", "runs"] + FAMILY_VIEWS
READING_ORDER = ["findings", "runs", "entanglement", "spectra", "esd", "intruders", "attention", "no_hair", "forgetting",
                 "thresholds", "msu", "msu_pairs", "similarity", "merge"]
MIN_IMAGES = {"entanglement": 3, "spectra": 3, "esd": 2, "intruders": 2, "attention": 3, "no_hair": 2, "thresholds": 3, "msu": 2, "msu_pairs": 1, "merge": 1,
              "forgetting": 2, "similarity": 3}


def open_view(results, view, monkeypatch):
    monkeypatch.setenv(RESULTS_ENV, str(results))
    app = AppTest.from_file(str(dashboards.APP), default_timeout=120)
    if view != navigation.FINDINGS:  # the landing page; any other is opened directly
        open_page(app, view)
    app.run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def open_page(app, key):
    """Switch ``app`` to the page ``key``: a script page by its file; a page a function draws (every
    family's, from its declaration) by the URL path it is registered under, as a browser would."""
    page = {v.key: v for v in navigation.views()}[key]
    if page.script is not None:
        app.switch_page(str(page.script.relative_to(page.script.parents[1])))
    else:
        app.run()  # registers the pages
        app._page_hash = calc_hash(key)  # st.Page keys a page by the hash of its url_path


def texts(app):
    return " ".join([m.value for m in app.markdown] + [i.value for i in app.info] + [t.value for t in app.title]
                    + [c.value for c in app.caption] + [w.value for w in app.warning])


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_on_real_runs(lab_results_folder, view, monkeypatch):
    app = open_view(lab_results_folder.results, view, monkeypatch)
    runs = [p for p in lab_results_folder.results.iterdir() if p.is_dir()]
    if view == "runs":  # every run listed, with its status
        frame = app.dataframe[0].value
        assert sorted(frame["run"]) == sorted([lab_results.LORA_RUN, lab_results.MARKUP_RUN, lab_results.MERGE_RUN])
        assert set(frame["status"]) == {"complete"}
        assert len(app.get("image")) >= 1
        return
    if view == "findings":  # one headline figure per family some run computed
        assert len(app.get("image")) == len(FAMILY_VIEWS) + 1 and "What fine-tuning did" in texts(app)
        return
    family = by_key(view)
    computed = any(os.path.exists(run / f"{family.tables[0]}.parquet") for run in runs)
    notice = f"{family.title}: {NOT_COMPUTED}"
    assert (notice in texts(app)) == (not computed)
    if computed:
        assert len(app.get("image")) >= MIN_IMAGES.get(view, 0)


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_on_a_run_with_tables_missing(lab_results_folder, view, monkeypatch):
    app = open_view(lab_results_folder.partial, view, monkeypatch)
    if view == "findings":  # only the updates have findings
        assert [s.value for s in app.subheader] == [by_key("deltas").title] and len(app.get("image")) == 1
    elif view != "runs":  # only the deltas table exists
        assert f"{by_key(view).title}: {NOT_COMPUTED}" in texts(app)
        assert len(app.get("image")) == 0


@pytest.mark.parametrize("view", ["findings", "runs", "entanglement", "merge"])
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


def test_the_pages_are_findings_runs_and_one_per_declared_family():
    assert [v.key for v in navigation.views()] == VIEWS == READING_ORDER
    assert [v.title for v in navigation.views()][2:] == [by_key(k).title for k in FAMILY_VIEWS]
    scripts = {p.name for p in navigation.VIEWS.glob("*.py")} - {"__init__.py"}
    assert scripts == {v.script.name for v in navigation.views() if v.script is not None}  # no script left behind
    assert {f.key for f in registered() if not f.on_runs_page} == set(FAMILY_VIEWS)


def test_a_family_whose_table_is_not_declared_has_no_page(lab_results_folder, monkeypatch):
    monkeypatch.delitem(TABLES, "spectra")
    assert [v.key for v in navigation.views()] == [v for v in VIEWS if v != "spectra"]
    app = open_view(lab_results_folder.results, "runs", monkeypatch)
    assert not app.exception
    app._page_hash = calc_hash("spectra")  # what a browser asking for /spectra would get
    app.run()
    assert not app.exception
    assert by_key("spectra").title not in [t.value for t in app.title]  # Streamlit does not know the page


# --- the numbers each page shows, against numpy on the reference updates and the stored tables ------------

def shown(app, *columns) -> pd.DataFrame:
    """The one dataframe on the page that has these columns."""
    frames = [d.value for d in app.dataframe if set(columns) <= set(d.value.columns)]
    assert len(frames) == 1, [list(d.value.columns) for d in app.dataframe]
    return frames[0]


def shown_markdown(app) -> str:
    return "\n".join(m.value for m in app.markdown)


def parquet_last(path) -> pd.DataFrame:
    """Measured rows of the last checkpoint in a table file (largest step, then name), by pandas alone."""
    df = pd.read_parquet(path)
    if "source" in df.columns:
        df = df[df["source"] == "delta"]
    keys = df[["checkpoint", "step"]].drop_duplicates("checkpoint")
    return df[df["checkpoint"] == sorted(zip(keys["step"].astype(float).fillna(-1.0), keys["checkpoint"]))[-1][1]]


def test_findings_page_shows_the_numbers_pandas_computes(lab_results_folder, monkeypatch):
    from lab.present.sentences import fmt

    app = open_view(lab_results_folder.results, "findings", monkeypatch)
    text = shown_markdown(app)
    lora = lab_results_folder.results / lab_results.LORA_RUN
    assert f"**{fmt(parquet_last(lora / 'deltas.parquet')['fro_norm'].mean())}**" in text
    assert f"**{fmt(parquet_last(lora / 'entanglement_summary.parquet')['valley_depth'].mean())}**" in text
    assert f"**{fmt(parquet_last(lora / 'msu.parquet')['effective_units'].median())}**" in text
    assert "not a verdict" in text  # the thresholds' asymptotic caveat


def test_attention_page_shows_fits_and_no_hair_per_run_and_length(lab_results_folder, monkeypatch):
    app = open_view(lab_results_folder.results, "attention", monkeypatch)
    digest = shown(app, "neither", "attention_tv").set_index(["run", "checkpoint", "seq_len"])
    for run in (lab_results.LORA_RUN, lab_results.MARKUP_RUN):
        stored = pd.read_parquet(lab_results_folder.results / run / "attention_summary.parquet")
        for (ck, L), g in stored.groupby(["checkpoint", "seq_len"]):
            row = digest.loc[(run, ck, L)]
            assert row["neither"] == (g["token_verdict"] == "neither fits").sum()
            assert row["cardy"] == (g["token_verdict"] == "cardy").sum()
            assert row["attention_tv"] == pytest.approx(g["attention_tv"].mean(), rel=1e-12)
            assert row["cardy_c_median"] == pytest.approx(g["token_cardy_c"].median(), rel=1e-12)


def test_thresholds_page_shows_the_largest_ratio_per_length(lab_results_folder, monkeypatch):
    app = open_view(lab_results_folder.results, "thresholds", monkeypatch)
    digest = shown(app, "ratio_max", "threshold").set_index(["run", "checkpoint", "seq_len"])
    stored = pd.read_parquet(lab_results_folder.results / lab_results.LORA_RUN / "thresholds.parquet")
    for (ck, L), g in stored.groupby(["checkpoint", "seq_len"]):
        row = digest.loc[(lab_results.LORA_RUN, ck, L)]
        assert row["ratio_max"] == pytest.approx(np.max(np.maximum(g["gamma_q"], g["gamma_k"])) / np.sqrt(np.log(L)), rel=1e-9)
        assert row["threshold"] == pytest.approx(np.sqrt(np.log(L)), rel=1e-12)
        # both scales: Alman–Song's is √d_head times Hu's; the largest logit beside ln L; γ over its Gaussian control
        d = g["d_head"].iloc[0]
        assert row["ratio_as_max"] == pytest.approx(row["ratio_max"] * np.sqrt(d), rel=1e-9)
        assert row["ln_L"] == pytest.approx(np.log(L), rel=1e-12)
        assert row["logit_max"] == pytest.approx(g["logit_max"].max(), rel=1e-12)
        assert row["evt_ratio_q_max"] == pytest.approx((g["gamma_q"] / g["evt_q"]).max(), rel=1e-9)
    assert "asymptotic" in texts(app)


def test_msu_page_shows_the_effective_units_per_role(lab_results_folder, monkeypatch):
    app = open_view(lab_results_folder.results, "msu", monkeypatch)
    (digest,) = [d.value for d in app.dataframe  # the per-role means, not the rows (which name their module)
                 if {"effective_units", "role"} <= set(d.value.columns) and "module" not in d.value.columns]
    digest = digest.set_index(["run", "checkpoint", "role"])
    stored = pd.read_parquet(lab_results_folder.results / lab_results.LORA_RUN / "msu.parquet")
    units = pd.read_parquet(lab_results_folder.results / lab_results.LORA_RUN / "msu_units.parquet")
    for (ck, role), g in stored.groupby(["checkpoint", "role"]):
        # the effective number of units recomputed from the per-unit shares: exp of their entropy
        shares = units[(units["checkpoint"] == ck) & (units["role"] == role)]
        eff = shares.groupby("module")["own_share"].apply(lambda p: np.exp(-(p * np.log(p)).sum()))
        assert digest.loc[(lab_results.LORA_RUN, ck, role), "effective_units"] == pytest.approx(eff.mean(), rel=1e-9)
        assert digest.loc[(lab_results.LORA_RUN, ck, role), "effective_units"] == pytest.approx(g["effective_units"].mean(), rel=1e-12)


def test_msu_pairs_page_shows_the_cross_term_errors(lab_results_folder, monkeypatch):
    app = open_view(lab_results_folder.results, "msu_pairs", monkeypatch)
    table = shown(app, "cross_term_error", "concat_sum_error").set_index("module")
    stored = pd.read_parquet(lab_results_folder.results / lab_results.LORA_RUN / "msu_pairs.parquet").set_index("module")
    assert sorted(table.index) == sorted(stored.index)
    for module, row in stored.iterrows():
        assert table.loc[module, "cross_term_error"] == row["cross_term_error"]
        assert table.loc[module, "cross_term_error_min"] <= table.loc[module, "cross_term_error_max"]


def test_no_hair_page_shows_each_pairs_sizes_inside_and_verdicts(lab_results_folder, monkeypatch):
    app = open_view(lab_results_folder.results, "no_hair", monkeypatch)
    pairs = shown(app, "size_ratio", "matched")
    stored = pd.read_parquet(lab_results_folder.results / lab_results.LORA_RUN / "no_hair.parquet")
    per_layer = stored.drop_duplicates("layer")
    assert len(pairs) == 1 == stored[["first", "second"]].drop_duplicates().shape[0]
    assert pairs["inside"].iloc[0] == pytest.approx(per_layer["inside"].mean(), rel=1e-12)
    assert pairs["update_first"].iloc[0] == pytest.approx(per_layer["update_first"].mean(), rel=1e-12)
    summary = shown(app, "closer", "not separated")
    assert summary[["closer", "farther", "not separated"]].to_numpy().sum() == len(stored)  # every row has a verdict
    # the verdict rule, recomputed here from the intervals
    closer = int((stored["distance_hi"] < stored[["first_base_lo", "second_base_lo"]].min(axis=1)).sum())
    assert summary["closer"].sum() == closer


def test_merge_page_shows_each_merged_adapters_mean_error(lab_results_folder, monkeypatch):
    app = open_view(lab_results_folder.results, "merge", monkeypatch)
    digest = shown(app, "rel_fro_error", "modules").set_index("checkpoint")
    stored = pd.read_parquet(lab_results_folder.results / lab_results.MERGE_RUN / "merge.parquet")
    assert sorted(digest.index) == sorted(lab_results.MERGE_METHODS)
    for merged, g in stored.groupby("checkpoint"):
        assert digest.loc[merged, "rel_fro_error"] == pytest.approx(g["rel_fro_error"].mean(), rel=1e-12)
        assert digest.loc[merged, "k"] == g["k"].max()
    assert digest.loc["svd", "rel_fro_error"] == pytest.approx(digest.loc["svd", "optimal_rel_fro_error"], rel=1e-9)


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
    """Page's mean entropy (d_A ≤ d_B), summed term by term here rather than taken from lab.kernels.page."""
    d_a, d_b = sorted((d_a, d_b))
    return float(np.sum(1.0 / np.arange(d_b + 1, d_a * d_b + 1)) - (d_a - 1) / (2 * d_b))


def test_the_method_filter_narrows_every_page_to_that_method(lab_results_folder, monkeypatch):
    """The folder's runs are a LoRA run (q, v and down projections) and a full fine-tune (q and v only):
    choosing "full" leaves only the full fine-tune's checkpoint and modules on the page."""
    app = open_view(lab_results_folder.results, "entanglement", monkeypatch)
    methods = next(m for m in app.sidebar.multiselect if m.label == "Methods")
    assert sorted(methods.options) == ["full", "lora"]
    assert any("down_proj" in m for m in app.selectbox[0].options)
    methods.set_value(["full"]).run()
    assert not app.exception
    module = app.selectbox[0]
    assert module.options and not any("down_proj" in m for m in module.options)
    captions = " ".join(c.value for c in app.caption)
    assert lab_results.MARKUP_CHECKPOINT in captions or "tuned" in captions
    assert "checkpoint-10" not in captions and "checkpoint-20" not in captions


def base_weight(results, module) -> np.ndarray:
    """W of the base, read from its safetensors file here (float64)."""
    from safetensors.numpy import load_file

    return load_file(str(results.base / "model.safetensors"))[f"{module}.weight"].astype(np.float64)


def test_esd_page_shows_alpha_of_w_and_w_plus_delta_per_module(lab_results_folder, monkeypatch):
    from lab.probes.esd import esd_metrics  # its fit is checked against a direct Clauset fit in tests/probes/test_esd.py

    app = open_view(lab_results_folder.results, "esd", monkeypatch)
    pairs = shown(app, "alpha_weight", "alpha_tuned", "alpha_shift")
    assert len(pairs) == len(lab_results_folder.lora_deltas) + len(lab_results_folder.full_deltas)
    for row in pairs.itertuples():
        w = base_weight(lab_results_folder, row.module)
        tuned = w + reference_delta(lab_results_folder, row)
        assert row.alpha_weight == pytest.approx(esd_metrics(w, randomize=False).fit.alpha, rel=1e-6), row.module
        assert row.alpha_tuned == pytest.approx(esd_metrics(tuned, randomize=False).fit.alpha, rel=1e-6), row.module
        assert row.alpha_shift == pytest.approx(row.alpha_tuned - row.alpha_weight, abs=1e-12)


def numpy_max_cos(w: np.ndarray, tuned: np.ndarray, side: str, k: int) -> np.ndarray:
    """max_i |cos(y_j, x_i)| for W + ΔW's top-k singular vectors y_j (σ > 0) against all of W's x_i, numpy's SVD."""
    uw, sw, vtw = np.linalg.svd(w)
    u, s, vt = np.linalg.svd(tuned)
    keep_w, keep = sw > sw[0] * 1e-12, s > s[0] * 1e-12
    x = uw[:, : len(sw)][:, keep_w] if side == "left" else vtw[: len(sw)].T[:, keep_w]
    y = u[:, : len(s)][:, keep] if side == "left" else vt[: len(s)].T[:, keep]
    return np.abs(y[:, :k].T @ x).max(axis=1)


def test_intruders_page_shows_the_sweep_numpy_counts(lab_results_folder, monkeypatch):
    app = open_view(lab_results_folder.results, "intruders", monkeypatch)
    totals = shown(app, "examined", "ε = 0.5")
    thresholds = [float(c.split("=")[1]) for c in totals.columns if c.startswith("ε = ")]
    assert thresholds == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    deltas = {(lab_results.LORA_RUN, ck, m): d for (ck, m), d in lab_results_folder.lora_deltas.items()}
    deltas |= {(lab_results.MARKUP_RUN, lab_results.MARKUP_CHECKPOINT, m): d for m, d in lab_results_folder.full_deltas.items()}
    assert len(totals) == len({(run, ck) for run, ck, _ in deltas}) * 2 * 4  # sides × the four k
    for row in totals.to_dict("records"):
        mine = {m: d for (run, ck, m), d in deltas.items() if run == row["run"] and ck == row["checkpoint"]}
        cos = {m: numpy_max_cos(base_weight(lab_results_folder, m), base_weight(lab_results_folder, m) + d, row["side"],
                                row["top_k"]) for m, d in mine.items()}
        assert row["modules"] == len(mine)
        assert row["examined"] == sum(c.size for c in cos.values())
        for eps in thresholds:
            assert row[f"ε = {eps:g}"] == sum(int((c < eps).sum()) for c in cos.values()), (row["run"], row["side"], eps)
    assert any("Intruders at ε = 0.5, k = 10 (left vectors)" in c.value for c in app.caption)


def test_a_section_can_read_past_the_sidebars_step_or_layer_filter(tmp_path):
    """Rows that join two checkpoints (pairs, merges) or describe a whole model are read without the step or the
    layer filter (page.read(step=False / layer=False)); every other filter of the selection still holds."""
    from dashboards.filters import Selection

    sel = Selection(tmp_path, [], ["checkpoint-20"], [20], ["q"], (1, 2), pd.DataFrame())
    every = sel.filters()
    assert ("step", "in", [20]) in every and ("layer", ">=", 1) in every and ("layer", "<=", 2) in every
    assert sel.filters(step=False) == [f for f in every if f[0] != "step"]
    assert sel.filters(layer=False) == [f for f in every if f[0] != "layer"]
    assert sel.filters(checkpoint=False, role=False, step=False, layer=False) == []
