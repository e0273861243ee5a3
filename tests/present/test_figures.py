"""The figures of the model-running and unit probes draw what the stored tables say: read back from the
matplotlib artists and compared with pandas on the parquet files (and closed forms: √ln L, a + b·ln ℓ)."""

import numpy as np
import pandas as pd
import pytest

import lab_results
from lab.present import load
from lab.present.figures import attention as attention_fig
from lab.present.figures import msu as msu_fig
from lab.present.figures import thresholds as thresholds_fig
from lab.store import open_run


def data_lines(chart):
    return {line.get_label().lstrip("_"): line for ax in chart.figure.axes for line in ax.get_lines()
            if line.get_gid() is not None and len(line.get_xdata())}


@pytest.fixture(scope="module")
def lora(lab_results_folder):
    return open_run(lab_results_folder.results / lab_results.LORA_RUN)


def test_token_profile_chart_draws_the_mean_profile_and_the_tables_cardy_fit(lora, lab_results_folder):
    where = [("layer", "==", 1), ("head", "==", 2), ("seq_len", "==", 16), ("checkpoint", "==", "checkpoint-20"),
             ("block", "==", "reads_past")]
    cuts = load.read(lora, "attention_token_cuts", None, where)
    fits = load.read(lora, "attention_token_fits", None, where)
    drawn = data_lines(attention_fig.token_profile_chart(cuts, fits))
    folder = lab_results_folder.results / lab_results.LORA_RUN
    stored = pd.read_parquet(folder / "attention_token_cuts.parquet")
    stored = stored[(stored["layer"] == 1) & (stored["head"] == 2) & (stored["seq_len"] == 16)
                    & (stored["checkpoint"] == "checkpoint-20") & (stored["block"] == "reads_past")]
    mean = stored.groupby("cut")["entropy"].mean().sort_index()
    points = drawn["lora-r4 · checkpoint-20 · profile"]
    assert np.allclose(points.get_xdata(), mean.index) and np.allclose(points.get_ydata(), mean)
    row = pd.read_parquet(folder / "attention_token_fits.parquet")
    row = row[(row["layer"] == 1) & (row["head"] == 2) & (row["seq_len"] == 16) & (row["checkpoint"] == "checkpoint-20")
              & (row["block"] == "reads_past")].iloc[0]
    cardy = drawn["lora-r4 · checkpoint-20 · Cardy fit"]
    x = np.asarray(cardy.get_xdata())
    assert np.allclose(cardy.get_ydata(), row["cardy_a"] + row["cardy_c"] / 3 * np.log(16 / np.pi * np.sin(np.pi * x / 16)))
    # the layer × head map of c holds the fits' c per cell (mean over L)
    all_fits = load.read(lora, "attention_token_fits", None, [("checkpoint", "==", "checkpoint-20"),
                                                               ("block", "==", "reads_past")])
    image = attention_fig.cardy_map_chart(all_fits).figure.axes[0].get_images()[0].get_array()
    want = all_fits.pivot_table(index="layer", columns="head", values="cardy_c", aggfunc="mean").sort_index()
    assert np.allclose(np.asarray(image), want.to_numpy())


def test_growth_chart_draws_the_largest_gamma_against_sqrt_ln_L(lora, lab_results_folder):
    chart = thresholds_fig.growth_chart(load.read(lora, "thresholds"))
    drawn = data_lines(chart)
    stored = pd.read_parquet(lab_results_folder.results / lab_results.LORA_RUN / "thresholds.parquet")
    for (ck, layer), g in stored.groupby(["checkpoint", "layer"]):
        want = g.assign(gamma=np.maximum(g["gamma_q"], g["gamma_k"])).groupby("seq_len")["gamma"].max().sort_index()
        line = drawn[f"lora-r4 · {ck} · layer {layer}"]
        assert np.allclose(line.get_xdata(), np.sqrt(np.log(want.index.to_numpy(dtype=float))))
        assert np.allclose(line.get_ydata(), want.to_numpy())
    scale = next(l for l in chart.figure.axes[0].get_lines() if "theorem's scale" in l.get_label())
    assert np.allclose(scale.get_xdata(), scale.get_ydata())  # the line γ = √ln L
    texts = " ".join(t.get_text() for t in chart.figure.axes[0].texts)
    assert "asymptotic" in texts and "not a verdict" in texts


def test_threshold_charts_draw_both_scales_the_logit_against_ln_L_and_the_control(lora, lab_results_folder):
    rows = load.read(lora, "thresholds")
    stored = pd.read_parquet(lab_results_folder.results / lab_results.LORA_RUN / "thresholds.parquet")
    as_scale, logit, control = (data_lines(c) for c in (thresholds_fig.growth_chart(rows, convention="as"),
                                                        thresholds_fig.logit_chart(rows), thresholds_fig.control_chart(rows)))
    for (ck, layer), g in stored.groupby(["checkpoint", "layer"]):
        by_len = g.assign(gamma=np.maximum(g["gamma_q"], g["gamma_k"])).groupby("seq_len")
        lengths = np.array(sorted(g["seq_len"].unique()), float)
        line = as_scale[f"lora-r4 · {ck} · layer {layer}"]
        # Alman–Song's scale is √d_head times Hu's, from the stored d_head
        assert np.allclose(line.get_ydata(), by_len["gamma"].max().sort_index() * np.sqrt(g["d_head"].iloc[0]))
        line = logit[f"lora-r4 · {ck} · layer {layer}"]
        assert np.allclose(line.get_xdata(), np.log(lengths))
        assert np.allclose(line.get_ydata(), g.groupby("seq_len")["logit_max"].max().sort_index())
        ratio = control[f"lora-r4 · {ck} · layer {layer}"]
        want = g.assign(r=np.maximum(g["evt_ratio_q"], g["evt_ratio_k"])).groupby("seq_len")["r"].max().sort_index()
        assert np.allclose(ratio.get_xdata(), lengths) and np.allclose(ratio.get_ydata(), want)
    for ck, g in stored.groupby("checkpoint"):
        by_len = g.groupby("seq_len")
        measured, evt = control[f"lora-r4 · {ck} · measured"], control[f"lora-r4 · {ck} · control"]
        assert np.allclose(measured.get_ydata(), by_len[["gamma_q", "gamma_k"]].max().max(axis=1).sort_index())
        assert np.allclose(evt.get_ydata(), by_len[["evt_q", "evt_k"]].max().max(axis=1).sort_index())
    scale = next(line for line in thresholds_fig.logit_chart(rows).figure.axes[0].get_lines() if "ln L" in line.get_label())
    assert np.allclose(scale.get_xdata(), scale.get_ydata())  # the line logit = ln L


def test_similarity_map_and_contributions_are_the_stored_values(lora, lab_results_folder):
    msu = load.read(lora, "msu", None, [("checkpoint", "==", "checkpoint-20")])
    chart = msu_fig.similarity_chart(msu)
    grid = np.asarray(chart.figure.axes[0].images[0].get_array(), dtype=float)
    stored = pd.read_parquet(lab_results_folder.results / lab_results.LORA_RUN / "msu.parquet")
    stored = stored[stored["checkpoint"] == "checkpoint-20"]
    assert np.allclose(grid, stored[["cos_a_max", "cos_a_mean", "cos_b_max", "cos_b_mean"]].to_numpy())
    module = "model.layers.1.self_attn.v_proj"
    units = load.read(lora, "msu_units", None, [("module", "==", module), ("checkpoint", "==", "checkpoint-20")])
    (line,) = data_lines(msu_fig.contributions_chart(units)).values()
    want = pd.read_parquet(lab_results_folder.results / lab_results.LORA_RUN / "msu_units.parquet")
    want = want[(want["module"] == module) & (want["checkpoint"] == "checkpoint-20")]
    assert np.allclose(line.get_ydata(), np.sort(want["contribution"].to_numpy())[::-1])  # order 1 = largest


def test_merge_chart_draws_each_method_and_the_eckart_young_floor(lab_results_folder):
    merge = load.read(open_run(lab_results_folder.results / lab_results.MERGE_RUN), "merge")
    chart = msu_fig.merge_chart(merge)
    drawn = data_lines(chart)
    stored = pd.read_parquet(lab_results_folder.results / lab_results.MERGE_RUN / "merge.parquet")
    for method, g in stored.groupby("method"):
        line = drawn[f"merges · {method}"]
        assert line.get_xdata()[0] == g["k"].max() and line.get_ydata()[0] == pytest.approx(g["rel_fro_error"].mean())
    floor = next(l for l in chart.figure.axes[0].get_lines() if "Eckart" in l.get_label())
    want = stored.groupby("k")["optimal_rel_fro_error"].mean().sort_index()
    assert np.allclose(floor.get_xdata(), want.index) and np.allclose(floor.get_ydata(), want.to_numpy())
    assert drawn["merges · svd"].get_ydata()[0] == pytest.approx(want.loc[lab_results.MERGE_RANK], rel=1e-9)
