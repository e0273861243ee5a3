"""Where adapter_similarity and forgetting show (issues 25 §3, 26 §3): figures, findings and report sections draw
and state what the stored tables say, read back from the matplotlib artists and the sentences' numbers and compared
with pandas/numpy on the parquet files.

Besides the shared results folder (two LoRA checkpoints and a full fine-tune, forgetting on --texts and reference
texts), a run of its own: a training output whose update grows along one direction (checkpoint-10/20/30: B, A plus
small seeded steps) and an unrelated adapter, so that 'most alike' and 'least alike' differ beyond their spread over
modules and adjacent checkpoints point alike."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from peft import LoraConfig, get_peft_model

import builders
import lab
import lab_results
from lab.present import forgetting as forgetting_frames
from lab.present import intruders as intr
from lab.present import load, similarity
from lab.present.figures import forgetting as forgetting_fig
from lab.present.figures import similarity as similarity_fig
from lab.present.findings import summarize
from lab.present.families import by_key
from lab.report.document import Section
from lab.report.page import build
from lab.store import open_run


def parquet(folder, run, table):
    return pd.read_parquet(folder / run / f"{table}.parquet")


def sentences(findings, key):
    return [s for f in findings if f.key == key for s in f.sentences]


@pytest.fixture(scope="module")
def runs(lab_results_folder):
    return load.runs_in(lab_results_folder.results)


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """A training output whose LoRA grows along its first direction, plus an unrelated adapter, analysed with
    adapter_similarity only."""
    root = tmp_path_factory.mktemp("grown")
    config = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(**config))
    builders.randomize_lora(model, seed=1, std=0.3)
    rng = np.random.default_rng(2)
    folder = root / "adapters"
    for step in (10, 20, 30):
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.add_(torch.tensor(0.05 * rng.standard_normal(tuple(p.shape)), dtype=p.dtype))
        model.save_pretrained(folder / f"checkpoint-{step}")
    other = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(**config))
    builders.randomize_lora(other, seed=9, std=0.3)
    other.save_pretrained(folder / "other")
    return lab.analyze([folder / "checkpoint-10", folder / "checkpoint-20", folder / "checkpoint-30", folder / "other"],
                       out=root / "results", run="grown", probes=["adapter_similarity"], progress=False)


# ---- figures ---------------------------------------------------------------------------------------

def test_the_pair_maps_hold_the_mean_over_modules_of_each_pair(grown):
    pairs = grown.table("adapter_similarity")
    steps = similarity.member_steps(grown.table("deltas"))
    assert similarity.members(pairs, steps) == ["other", "checkpoint-10", "checkpoint-20", "checkpoint-30"]
    for measure in ("cosine", "grassmann_left", "sign_conflict"):
        chart = similarity_fig.pairs_chart(pairs, steps, measure=measure)
        image = np.ma.filled(chart.figure.axes[0].get_images()[0].get_array(), np.nan)
        order = ["other", "checkpoint-10", "checkpoint-20", "checkpoint-30"]
        for i, a in enumerate(order):
            for j, b in enumerate(order):
                if i == j:
                    assert np.isnan(image[i, j])  # the diagonal is left blank
                    continue
                rows = pairs[((pairs["first"] == a) & (pairs["second"] == b)) | ((pairs["first"] == b) & (pairs["second"] == a))]
                assert image[i, j] == pytest.approx(rows[measure].mean(), rel=1e-12), (measure, a, b)


def test_the_layer_maps_hold_each_layers_mean_and_phi_the_mean_grid(grown):
    pairs = grown.table("adapter_similarity")
    steps = similarity.member_steps(grown.table("deltas"))
    chart = similarity_fig.layers_chart(pairs, steps)
    panels = [ax for ax in chart.figure.axes if ax.get_images() and ax.get_title().startswith("layer")]
    assert [ax.get_title() for ax in panels] == [f"layer {k}" for k in sorted(pairs["layer"].unique())]
    for ax in panels:
        layer = int(ax.get_title().split()[1])
        image = np.ma.filled(ax.get_images()[0].get_array(), np.nan)
        mine = pairs[pairs["layer"] == layer]
        want = mine[(mine["first"] == "checkpoint-10") & (mine["second"] == "checkpoint-30")]["cosine"].mean()
        assert image[1, 3] == pytest.approx(want, rel=1e-12) and image[3, 1] == pytest.approx(want, rel=1e-12)
    grid = grown.table("subspace_similarity")
    one = grid[(grid["first"] == "checkpoint-10") & (grid["second"] == "checkpoint-20")]
    chart = similarity_fig.phi_chart(one)
    for ax in chart.figure.axes[:2]:
        side = ax.get_title().split()[0]
        want = one[one["side"] == side].pivot_table(index="i", columns="j", values="phi", aggfunc="mean")
        assert np.allclose(np.asarray(ax.get_images()[0].get_array()), want.sort_index().to_numpy())


def test_the_forgetting_charts_draw_the_stored_kl_loss_change_and_distances(lab_results_folder):
    folder = lab_results_folder.results
    rows = load.read(open_run(folder / lab_results.LORA_RUN), "forgetting")
    chart = forgetting_fig.kl_chart(rows)
    left, right = chart.figure.axes[:2]
    longest = rows[rows["seq_len"] == rows["seq_len"].max()]
    def markers(ax):  # a run's markers (its error bars' caps, drawn as "_" markers, say their run too)
        return sorted(float(y) for line in ax.get_lines() if line.get_gid() and line.get_marker() != "_"
                      for y in line.get_ydata())

    drawn_kl, drawn_change = markers(left), markers(right)
    assert np.allclose(drawn_kl, sorted(longest["kl"])) and np.allclose(drawn_change, sorted(longest["loss_change"]))
    layers = parquet(folder, lab_results.LORA_RUN, "forgetting_layers")
    chart = forgetting_fig.layers_chart(layers)
    lines = {line.get_label().lstrip("_"): line for line in chart.figure.axes[0].get_lines() if line.get_gid()
             and len(line.get_xdata())}
    for (ck, text_set), g in layers[layers["seq_len"] == layers["seq_len"].max()].groupby(["checkpoint", "text_set"]):
        g = g.sort_values("hidden_state")
        line = lines[f"{lab_results.LORA_RUN} · {ck} · {text_set}"]
        assert np.allclose(line.get_xdata(), g["hidden_state"]) and np.allclose(line.get_ydata(), g["cosine_distance"])


# ---- findings --------------------------------------------------------------------------------------

def test_similarity_findings_name_the_most_and_least_alike_pairs_and_the_turning(grown):
    (sentence,) = sentences(summarize([grown]), "similarity")
    pairs = grown.table("adapter_similarity")
    means = pairs.groupby(["first", "second"])["cosine"].mean()
    top, low = means.idxmax(), means.idxmin()
    assert {top[0], top[1]} <= {"checkpoint-10", "checkpoint-20", "checkpoint-30"} and "other" in low
    n = sentence.numbers
    assert n["cosine_top"] == pytest.approx(means.max(), rel=1e-12) and n["cosine_low"] == pytest.approx(means.min(), rel=1e-12)
    assert n["pairs"] == 6 and n["members"] == 4
    # the most alike pair's cosines over modules lie above the least alike's with room to spare: "separated"
    assert pairs[(pairs["first"] == top[0]) & (pairs["second"] == top[1])]["cosine"].min() > \
        pairs[(pairs["first"] == low[0]) & (pairs["second"] == low[1])]["cosine"].max()
    assert "(least alike; separated over modules)" in sentence.plain()
    for a, b in (("checkpoint-10", "checkpoint-20"), ("checkpoint-20", "checkpoint-30")):
        g = pairs[(pairs["first"] == a) & (pairs["second"] == b)]
        assert n[f"cosine_step[{a}:{b}]"] == pytest.approx(g["cosine"].mean(), rel=1e-12)
    g = pairs[(pairs["first"] == "checkpoint-10") & (pairs["second"] == "checkpoint-30")]
    assert n["cosine_first_last"] == pytest.approx(g["cosine"].mean(), rel=1e-12)
    d = grown.table("deltas").drop_duplicates("module").set_index("module")
    chance = (1 / np.sqrt(d.loc[pairs["module"].unique(), "rows"] * d.loc[pairs["module"].unique(), "cols"])).mean()
    assert n["cosine_chance"] == pytest.approx(chance, rel=1e-12)
    assert ("beyond twice the chance scale" in sentence.plain()) == (abs(means.max()) > 2 * chance)


def test_forgetting_findings_state_which_text_set_moved_more_only_where_intervals_separate(runs, lab_results_folder):
    found = summarize(runs)
    for sentence in sentences(found, "forgetting"):
        if sentence.run is None:
            continue
        f = parquet(lab_results_folder.results, sentence.run, "forgetting")
        steps = f["step"].astype(float).fillna(-1.0)
        f = f[steps == steps.max()]
        f = f[f["seq_len"] == f["seq_len"].max()].set_index("text_set")
        t, r = f.loc["texts"], f.loc["reference"]
        if r["kl_lo"] > t["kl_hi"]:
            assert "KL larger on the reference texts (intervals separate)" in sentence.plain()
        elif r["kl_hi"] < t["kl_lo"]:
            assert "KL larger on --texts (intervals separate)" in sentence.plain()
        else:
            assert "KL on the two text sets not separated (intervals overlap)" in sentence.plain()


def test_the_comparison_puts_reference_kl_beside_update_size_and_intruders(runs, lab_results_folder):
    (sentence,) = [s for s in sentences(summarize(runs), "forgetting") if s.run is None]
    folder = lab_results_folder.results
    for run in (lab_results.LORA_RUN, lab_results.MARKUP_RUN):
        f = parquet(folder, run, "forgetting")
        steps = f["step"].astype(float).fillna(-1.0)
        ck = f.loc[steps == steps.max(), "checkpoint"].iloc[0]
        f = f[(f["checkpoint"] == ck) & (f["seq_len"] == f["seq_len"].max()) & (f["text_set"] == "reference")].iloc[0]
        d = parquet(folder, run, "deltas")
        i = parquet(folder, run, "intruders")
        i = i[i["checkpoint"] == ck]
        eps, k = intr.setting(i)
        want = {f"fro_norm[{run}]": d[d["checkpoint"] == ck]["fro_norm"].mean(), f"kl[{run}]": f["kl"],
                f"kl_lo[{run}]": f["kl_lo"], f"kl_hi[{run}]": f["kl_hi"],
                f"intruders[{run}]": i[(abs(i["threshold"] - eps) < 1e-9) & (i["top_k"] == k) & (i["side"] == "left")]["intruder_count"].sum()}
        for name, value in want.items():
            assert sentence.numbers[name] == pytest.approx(float(value), rel=1e-12), name
    text = sentence.plain()
    assert text.index(lab_results.MARKUP_RUN) < text.index(lab_results.LORA_RUN)  # smaller update first
    kl = {run: sentence.numbers[f"kl_lo[{run}]"] for run in (lab_results.LORA_RUN, lab_results.MARKUP_RUN)}
    hi = {run: sentence.numbers[f"kl_hi[{run}]"] for run in kl}
    overlap = not (kl[lab_results.LORA_RUN] > hi[lab_results.MARKUP_RUN] or hi[lab_results.LORA_RUN] < kl[lab_results.MARKUP_RUN])
    assert ("KL against update size: not separated" in text) == overlap
    # one LoRA run and one full fine-tune: by method, one run a side is no seeds, never 'separated'
    assert (f"(1 run: {lab_results.LORA_RUN}) against full fine-tuning (1 run: {lab_results.MARKUP_RUN}): "
            "not separated (one run on a side") in text


# ---- report sections --------------------------------------------------------------------------------

def test_the_report_sections_draw_the_figures_and_tables(runs, lab_results_folder, grown):
    section = Section("similarity", "", "", True)
    build(section, runs + [grown], by_key("similarity").section)
    section.draw()  # the overview figures and the per-run details (HTML with --details)
    assert [c.title for c in section.charts] == ["How alike the updates are: member × member (mean over modules)",
                                                 "Grassmann distance of the top-k left subspaces (mean over modules)"]
    titles = [c.title for c in section.details]
    assert sum(t.startswith("Member × member cosine per layer") for t in titles) == 2  # lora-r4 and grown
    assert sum(t.startswith("φ(i, j) of the most alike pair") for t in titles) == 2
    table = section.tables[0]
    pairs = pd.concat([parquet(lab_results_folder.results, lab_results.LORA_RUN, "adapter_similarity"),
                       grown.table("adapter_similarity")])
    digest = similarity.digest(pairs)
    assert len(digest) == 1 + 6
    row = digest[(digest["run"] == "grown") & (digest["first"] == "checkpoint-10") & (digest["second"] == "other")].iloc[0]
    mine = pairs[(pairs["run"] == "grown") & (pairs["first"] == "checkpoint-10") & (pairs["second"] == "other")]
    assert row["cosine"] == pytest.approx(mine["cosine"].mean(), rel=1e-12) and row["modules"] == mine["module"].nunique()
    assert len(table.rows) == len(digest) and table.header == list(digest.columns)
    for chart in section.charts + section.details:
        chart.close()

    section = Section("forgetting", "", "", True)
    build(section, runs, by_key("forgetting").section)
    section.draw()
    assert [c.title for c in section.charts] == ["What fine-tuning cost the model: KL and loss change per text set",
                                                 "How far the hidden states moved, per layer"]
    rows = load.read_runs(runs, "forgetting")
    layers = load.read_runs(runs, "forgetting_layers")
    frame = forgetting_frames.digest(rows, layers)
    assert len(frame) == len(rows)
    for _, r in frame.iterrows():
        lay = layers[(layers["run"] == r["run"]) & (layers["checkpoint"] == r["checkpoint"])
                     & (layers["text_set"] == r["text_set"]) & (layers["seq_len"] == r["seq_len"])]
        assert r["most_moved_cosine_distance"] == pytest.approx(lay["cosine_distance"].max(), rel=1e-12)
    for chart in section.charts:
        chart.close()
