"""The esd and intruders figures draw what the stored tables say: read back from the matplotlib artists and
compared with pandas on the parquet files; an empty selection draws a message, not an error."""

import numpy as np
import pandas as pd
import pytest

import lab_results
from lab.present import load
from lab.present.figures import esd as esd_fig
from lab.present.figures import intruders as intruders_fig
from lab.store import open_run


def data_lines(chart):
    return {line.get_label().lstrip("_"): line for ax in chart.figure.axes for line in ax.get_lines()
            if line.get_gid() is not None and len(line.get_xdata())}


@pytest.fixture(scope="module")
def lora(lab_results_folder):
    return open_run(lab_results_folder.results / lab_results.LORA_RUN)


@pytest.fixture(scope="module")
def stored_esd(lab_results_folder):
    return pd.read_parquet(lab_results_folder.results / lab_results.LORA_RUN / "esd.parquet")


def test_alpha_chart_draws_w_left_and_w_plus_delta_right_per_role(lora, stored_esd):
    chart = esd_fig.alpha_chart(load.read(lora, "esd"))
    left, right = chart.figure.axes[:2]
    for ax, source in ((left, "weight"), (right, "tuned")):
        lines = {line.get_label().lstrip("_"): line for line in ax.get_lines() if line.get_gid() is not None
                 and len(line.get_xdata())}
        rows = stored_esd[stored_esd["source"] == source]
        assert len(lines) == rows.groupby(["checkpoint", "role"]).ngroups
        for (ck, role), g in rows.groupby(["checkpoint", "role"]):
            want = g.groupby("layer")["alpha"].mean().sort_index()
            line = lines[f"lora-r4 · {ck} · {role}"]
            assert np.allclose(line.get_xdata(), want.index) and np.allclose(line.get_ydata(), want)
    assert "heavier" in chart.caption


def test_shift_chart_draws_alpha_of_w_plus_delta_minus_alpha_of_w(lora, stored_esd):
    drawn = data_lines(esd_fig.shift_chart(load.read(lora, "esd")))
    wide = stored_esd[stored_esd["checkpoint"] != "controls"].pivot_table(
        index=["checkpoint", "module", "layer", "role"], columns="source", values="alpha").reset_index()
    wide["shift"] = wide["tuned"] - wide["weight"]
    for (ck, role), g in wide.groupby(["checkpoint", "role"]):
        want = g.groupby("layer")["shift"].mean().sort_index()
        assert np.allclose(drawn[f"lora-r4 · {ck} · {role}"].get_ydata(), want)


def test_intruder_heatmap_cells_are_the_counts_at_the_chosen_eps_and_k(lab_results_folder):
    runs = load.runs_in(lab_results_folder.results)
    rows = load.read_runs(runs, "intruders")
    last = {lab_results.LORA_RUN: "checkpoint-20", lab_results.MARKUP_RUN: lab_results.MARKUP_CHECKPOINT}
    rows = rows[[last.get(r) == c for r, c in zip(rows["run"], rows["checkpoint"])]]
    chart = intruders_fig.heatmap_chart(rows, 0.3, 20, "right")
    images = [ax.get_images()[0].get_array() for ax in chart.figure.axes if ax.get_images()]
    for image, run in zip(images, sorted(last)):  # one panel per run, in name order
        stored = pd.read_parquet(lab_results_folder.results / run / "intruders.parquet")
        stored = stored[(stored["checkpoint"] == last[run]) & (stored["threshold"] == 0.3) & (stored["top_k"] == 20)
                        & (stored["side"] == "right")]
        want = stored.pivot_table(index="layer", columns="role", values="intruder_count", aggfunc="sum").sort_index()
        assert np.array_equal(np.asarray(image), want.to_numpy(dtype=float)), run
    assert len(images) == 2 and "ε = 0.3" in chart.title and "k = 20" in chart.title


def test_intruder_sweep_draws_the_mean_count_per_module_against_eps(lora, lab_results_folder):
    drawn = data_lines(intruders_fig.sweep_chart(load.read(lora, "intruders"), 10))
    stored = pd.read_parquet(lab_results_folder.results / lab_results.LORA_RUN / "intruders.parquet")
    stored = stored[stored["top_k"] == 10]
    for (ck, side), g in stored.groupby(["checkpoint", "side"]):
        want = g.groupby("threshold")["intruder_count"].mean().sort_index()
        line = drawn[f"lora-r4 · {ck} · {side}"]
        assert np.allclose(line.get_xdata(), want.index) and np.allclose(line.get_ydata(), want)


@pytest.mark.parametrize("draw", [
    lambda: esd_fig.alpha_chart(pd.DataFrame()),
    lambda: esd_fig.shift_chart(pd.DataFrame()),
    lambda: intruders_fig.heatmap_chart(pd.DataFrame(), 0.5, 10),
    lambda: intruders_fig.sweep_chart(pd.DataFrame(), 10),
])
def test_empty_selections_draw_a_message(draw):
    chart = draw()
    assert chart.caption.startswith("no ") and not chart.figure.axes[0].get_lines()

