"""The shared figure functions draw what the rows say, and the theory lines they add are right:
checked against numpy's SVD of PEFT's own updates and closed forms (maximum, Page's harmonic sum)."""

import math

import numpy as np
import pandas as pd
import pytest

import lab_results
from lab.present import load
from lab.present.figures import entanglement as ent_fig
from lab.present.figures import spectra as spec_fig
from lab.present.figures import updates as updates_fig
from lab.present.figures.common import log_if_wide, new_figure
from lab.present.frames import matching_controls, measured
from lab.present.valleys import entanglement_valleys, valleys, valleys_from_summary
from lab.store import open_run

MODULE = "model.layers.1.self_attn.q_proj"  # 32×32: ten sites of dimension 2, row|column cut after 5


def prime_factors(n):
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def page_harmonic(d_a, d_b):
    """Page's mean entropy by its original sum (Page 1993), d_A ≤ d_B."""
    d_a, d_b = sorted((d_a, d_b))
    return sum(1.0 / k for k in range(d_b + 1, d_a * d_b + 1)) - (d_a - 1) / (2 * d_b)


def lines(chart):
    return {line.get_label(): line for ax in chart.figure.axes for line in ax.get_lines()}


def data_lines(chart, axis=None):
    """The lines that draw a run's rows (tagged with the run as gid), by their description
    (run · checkpoint · role …); legend proxies (no data) and theory lines left out."""
    axes = chart.figure.axes if axis is None else [chart.figure.axes[axis]]
    return {line.get_label().lstrip("_"): line for ax in axes for line in ax.get_lines()
            if line.get_gid() is not None and len(line.get_xdata())}


@pytest.fixture(scope="module")
def lora_run(lab_results_folder):
    return open_run(lab_results_folder.results / lab_results.LORA_RUN)


@pytest.fixture(scope="module")
def profile_rows(lora_run):
    return load.read(lora_run, "entanglement", filters=[("module", "==", MODULE), ("checkpoint", "==", "checkpoint-20")])


def test_profile_draws_entropy_maximum_page_and_rank_ceiling(profile_rows, lora_run, lab_results_folder):
    controls = load.read(lora_run, "entanglement", filters=[("source", "in", ["random", "random_lora"])])
    chart = ent_fig.profile_chart(profile_rows, matching_controls(profile_rows, controls, 4), rank_bound=4)
    drawn = lines(chart)
    sites = prime_factors(32) + prime_factors(32)
    cuts = np.arange(1, len(sites))
    d_left = np.array([math.prod(sites[:k]) for k in cuts])
    d_right = 32 * 32 // d_left

    measured_line = data_lines(chart)["lora-r4 · checkpoint-20"]
    assert np.array_equal(measured_line.get_xdata(), cuts)
    delta = lab_results_folder.lora_deltas[("checkpoint-20", MODULE)]
    row_cut = len(prime_factors(32))
    assert measured_line.get_ydata()[row_cut - 1] == pytest.approx(lab_results.entropy_of_squared_singular_values(delta), abs=1e-9)
    assert np.allclose(drawn["maximum ln min(D_left, D_right)"].get_ydata(), np.log(np.minimum(d_left, d_right)))
    assert np.allclose(drawn["Page: random state (theory)"].get_ydata(),
                       [page_harmonic(a, b) for a, b in zip(d_left, d_right)], atol=1e-9)
    assert np.allclose(drawn["ceiling ln r at the row|column cut"].get_ydata(), math.log(4))
    vertical = [l for l in chart.figure.axes[0].get_lines() if len(l.get_xdata()) and np.ptp(l.get_xdata()) == 0 and l.get_xdata()[0] == row_cut]
    assert vertical, "the row|column cut is marked"
    assert "control: Gaussian matrix" in drawn and "control: untrained LoRA, Gaussian B·A of rank r" in drawn


def test_matching_controls_keep_only_the_modules_shape_and_rank(profile_rows, lora_run):
    controls = load.read(lora_run, "entanglement", filters=[("source", "in", ["random", "random_lora"])])
    chosen = matching_controls(profile_rows, controls, 4)
    assert set(chosen["module"]) == {"random 32x32", "random lora 32x32 r4"}
    assert matching_controls(profile_rows, controls, 3)["module"].unique().tolist() == ["random 32x32"]


def test_heatmap_cells_are_entropy_over_page(lora_run):
    rows = load.read(lora_run, "entanglement", filters=[("checkpoint", "==", "checkpoint-20"), ("role", "==", "q")])
    chart = ent_fig.heatmap_chart(rows)
    grid = np.asarray(chart.figure.axes[0].images[0].get_array(), dtype=float)
    expected = np.array([[r.entropy / page_harmonic(r.d_left, r.d_right) for r in g.sort_values("cut").itertuples()]
                         for _, g in rows.groupby("layer", sort=True)])
    assert np.allclose(grid, expected, atol=1e-9)


def test_valleys_from_profiles_agree_with_the_probe_summary_and_numpy(lora_run, lab_results_folder):
    ent = load.read(lora_run, "entanglement")
    summary = load.read(lora_run, "entanglement_summary")
    deltas = load.read(lora_run, "deltas")
    ours = valleys(ent, deltas).set_index(["checkpoint", "module", "source"]).sort_index()
    theirs = valleys_from_summary(summary).set_index(["checkpoint", "module", "source"]).sort_index()
    assert ours.index.equals(theirs.index)
    for column in ("valley_entropy", "valley_page", "depth"):
        assert np.allclose(ours[column], theirs[column], atol=1e-9), column
    for (checkpoint, module), delta in lab_results_folder.lora_deltas.items():
        row = ours.loc[(checkpoint, module, "delta")]
        assert row["valley_entropy"] == pytest.approx(lab_results.entropy_of_squared_singular_values(delta), abs=1e-9)
        assert row["valley_entropy"] <= row["ln_rank_bound"] + 1e-12


def test_valley_chart_plots_depth_per_layer(lora_run):
    v = valleys(load.read(lora_run, "entanglement"), load.read(lora_run, "deltas"))
    v = measured(v[v["checkpoint"] == "checkpoint-20"])
    chart = ent_fig.valley_chart(v)
    by_label = data_lines(chart, axis=0)
    q = v[v["role"] == "q"].sort_values("layer")
    assert np.allclose(by_label["lora-r4 · checkpoint-20 · q"].get_ydata(), q["depth"])


def test_sigma_chart_matches_numpy_svd(lora_run, lab_results_folder):
    sv = load.read(lora_run, "singular_values", filters=[("module", "==", MODULE), ("checkpoint", "==", "checkpoint-20")])
    chart = spec_fig.sigma_chart(sv)
    (line,) = data_lines(chart).values()
    expected = np.linalg.svd(lab_results_folder.lora_deltas[("checkpoint-20", MODULE)], compute_uv=False)
    y = np.asarray(line.get_ydata(), dtype=float)
    assert np.allclose(y[:4], expected[:4], rtol=1e-9)
    assert chart.figure.axes[0].get_yscale() == "log"


def test_rank_charts_match_numpy_definitions(lora_run, lab_results_folder):
    spectra = load.read(lora_run, "spectra", filters=[("checkpoint", "==", "checkpoint-20")])
    chart = spec_fig.ranks_chart(spectra)
    effective = {k.rsplit(" · ", 1)[-1]: l for k, l in data_lines(chart, axis=0).items()}
    stable = {k.rsplit(" · ", 1)[-1]: l for k, l in data_lines(chart, axis=1).items()}
    for role, suffix in (("q", "q_proj"), ("v", "v_proj")):
        exp_eff, exp_stable = [], []
        for layer in (0, 1):
            s = np.linalg.svd(lab_results_folder.lora_deltas[("checkpoint-20", f"model.layers.{layer}.self_attn.{suffix}")],
                              compute_uv=False)
            s = s[s > s[0] * 1e-12]
            exp_eff.append(math.exp(lab_results.shannon_entropy(s / s.sum())))
            exp_stable.append((s**2).sum() / s[0] ** 2)
        assert np.allclose(effective[role].get_ydata(), exp_eff, rtol=1e-9), role
        assert np.allclose(stable[role].get_ydata(), exp_stable, rtol=1e-9), role
    energy = spec_fig.energy_chart(spectra)
    assert {"99 % · lora-r4 · checkpoint-20 · q", "90 % · lora-r4 · checkpoint-20 · q"} <= set(data_lines(energy))


def test_norms_chart_matches_peft_updates(lora_run, lab_results_folder):
    deltas = load.read(lora_run, "deltas", filters=[("checkpoint", "==", "checkpoint-10")])
    chart = updates_fig.norms_chart(deltas)
    drawn = {k.rsplit(" · ", 1)[-1]: l for k, l in data_lines(chart).items()}
    for role, suffix in (("q", "q_proj"), ("down", "down_proj")):
        expected = [np.linalg.norm(lab_results_folder.lora_deltas[("checkpoint-10", m)])
                    for m in sorted(m for (c, m) in lab_results_folder.lora_deltas if c == "checkpoint-10" and m.endswith(suffix))]
        assert np.allclose(drawn[role].get_ydata(), expected, rtol=1e-9), role


@pytest.mark.parametrize("empty", [
    pd.DataFrame(columns=["run", "checkpoint", "step", "module", "layer", "role", "source", "cut", "row_sites",
                          "n_sites", "d_left", "d_right", "entropy", "page_entropy", "max_entropy"]),
    pd.DataFrame(),  # what a read of an absent table gives
])
def test_empty_selections_draw_a_message_not_an_error(empty):
    charts = (ent_fig.profile_chart(empty), ent_fig.heatmap_chart(empty), ent_fig.valley_chart(empty),
              ent_fig.steps_chart(empty), spec_fig.sigma_chart(empty), spec_fig.ranks_chart(empty),
              spec_fig.energy_chart(empty), updates_fig.norms_chart(empty))
    for chart in charts:
        texts = [t.get_text() for ax in chart.figure.axes for t in ax.texts]
        assert texts and texts[0].startswith(("no ", "fewer than")), chart.title


@pytest.mark.parametrize("values, scale", [([1, 10, 1000], "log"), ([1.0, 1.5, 2.0], "linear"), ([0, 0], "linear")])
def test_log_axis_only_for_wide_ranges(values, scale):
    fig, (ax,) = new_figure()
    log_if_wide(ax, values)
    assert ax.get_yscale() == scale


def test_entanglement_valleys_read_the_summary_when_every_run_has_it(lora_run):
    expected = valleys_from_summary(load.read(lora_run, "entanglement_summary"))
    pd.testing.assert_frame_equal(entanglement_valleys([lora_run]), expected)


def test_reads_drop_the_columns_and_filters_a_table_lacks(lora_run):
    from lab.store.schema import TABLES

    assert lora_run.columns("deltas") == TABLES["deltas"].names
    everything = lora_run.table("deltas")
    assert lora_run.rows("deltas") == len(everything)
    frame = load.read(lora_run, "deltas", ["module", "no_such_column"],
                      [("no_such_column", "==", 1), ("checkpoint", "==", "checkpoint-10")])
    assert list(frame.columns) == ["module"]
    assert sorted(frame["module"]) == sorted(everything.loc[everything["checkpoint"] == "checkpoint-10", "module"])
    absent = load.read(lora_run, "no_such_table", ["module"])
    assert absent.empty and list(absent.columns) == ["module"]
