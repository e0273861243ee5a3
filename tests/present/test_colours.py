"""Colours that identify: a run keeps its colour whatever the figure, and a legend stays readable with
4 runs × 3 checkpoints (a colour per run, one entry for the faint earlier checkpoints, one per role),
checked on real rows of the lora run relabelled as four runs of three checkpoints."""

import pandas as pd
import pytest
from matplotlib.colors import to_rgb

import lab_results
from lab.present import colours, load
from lab.present.figures import spectra as spectra_fig
from lab.present.figures import updates as updates_fig
from lab.store import open_run


@pytest.fixture(scope="module")
def sixteen_series(lab_results_folder):
    """The lora run's deltas and σ rows as 4 runs × 3 checkpoints (checkpoint-10 twice: steps 10, 15, 20)."""
    run = open_run(lab_results_folder.results / lab_results.LORA_RUN)
    frames = {}
    for table in ("deltas", "singular_values"):
        rows = load.read(run, table)
        rows = rows[rows["checkpoint"] != "controls"]
        copies = []
        for r in range(4):
            for step, source in ((10, "checkpoint-10"), (15, "checkpoint-10"), (20, "checkpoint-20")):
                c = rows[rows["checkpoint"] == source].copy()
                c["run"], c["checkpoint"], c["step"] = f"run-{r}", f"checkpoint-{step}", step
                copies.append(c)
        frames[table] = pd.concat(copies, ignore_index=True)
    return frames


def legend_labels(chart):
    return [t.get_text() for legend in chart.figure.legends for t in legend.get_texts()]


def test_a_legend_of_4_runs_by_3_checkpoints_names_each_run_once(sixteen_series):
    with colours.using([f"run-{r}" for r in range(4)]):
        norms = updates_fig.norms_chart(sixteen_series["deltas"])
        sv = sixteen_series["singular_values"]
        sigma = spectra_fig.sigma_chart(sv[sv["module"] == "model.layers.1.self_attn.q_proj"], max_series=100)
    for chart in (norms, sigma):
        labels = legend_labels(chart)
        assert [l for l in labels if l.startswith("run-")] == [f"run-{r}" for r in range(4)], labels
        assert sum("earlier checkpoints" in l for l in labels) == 1
        assert len(labels) <= 4 + 1 + 3 and not any("truncated" in l for l in labels), labels
        drawn = {}
        for ax in chart.figure.axes:
            for line in ax.get_lines():
                if line.get_gid() and len(line.get_xdata()):
                    drawn.setdefault(line.get_gid(), set()).add(to_rgb(line.get_color()))
        assert len(drawn) == 4 and all(len(c) == 1 for c in drawn.values())
        assert len({next(iter(c)) for c in drawn.values()}) == 4


def test_a_run_keeps_its_colour_whatever_else_is_drawn():
    with colours.using(["b", "a", "c"]) as mapping:
        assert colours.run_colour("a") == colours.RUN_PALETTE[0] == mapping["a"]
        assert colours.run_colour("c") == colours.RUN_PALETTE[2]
        assert colours.run_colour("unknown") == colours.RUN_PALETTE[3]  # a run the folder lacked: the next free one
    assert colours.checkpoint_alpha(2, 3) == 1.0 and colours.checkpoint_alpha(0, 3) < colours.checkpoint_alpha(1, 3) < 1.0
