"""The findings' numbers equal those computed here with pandas straight from the parquet files, for a
run with controls (lora-r4), one without (the full fine-tune), a merge run, one run alone and several
together; a run that lacks a table gets no sentence about it; comparisons appear only with several runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import lab_results
from lab.present import load
from lab.present.findings import summarize
from lab.store.schema import ASYMPTOTIC_CAVEAT
from lab.store import open_run

FAMILY_TABLE = {"deltas": "deltas", "entanglement": "entanglement_summary", "spectra": "spectra",
                "attention": "attention_summary", "no_hair": "no_hair", "thresholds": "thresholds", "msu": "msu",
                "msu_pairs": "msu_pairs", "similarity": "adapter_similarity", "forgetting": "forgetting",
                "merge": "merge", "esd": "esd", "intruders": "intruders"}


def parquet(folder, run, table) -> pd.DataFrame:
    return pd.read_parquet(folder / run / f"{table}.parquet")


def last(df: pd.DataFrame) -> pd.DataFrame:
    """Measured rows of the last checkpoint: largest step (none = before every step), then name."""
    if "source" in df.columns:
        df = df[df["source"].isna() | (df["source"] == "delta")]
    df = df[df["checkpoint"] != "controls"]
    keys = df[["checkpoint", "step"]].drop_duplicates("checkpoint")
    order = sorted(zip(keys["step"].astype(float).fillna(-1.0), keys["checkpoint"]))
    return df[df["checkpoint"] == order[-1][1]]


def expected(folder, run) -> dict[str, dict[str, float]]:
    """Per family, the numbers its sentence about ``run`` must carry, from pandas on the files."""
    out = {}
    has = {p.stem for p in (folder / run).glob("*.parquet")}
    if "deltas" in has:
        d = last(parquet(folder, run, "deltas"))
        out["deltas"] = {"modules": len(d), "mean_fro_norm": d["fro_norm"].mean(), "max_fro_norm": d["fro_norm"].max()}
    if "entanglement_summary" in has:
        e = parquet(folder, run, "entanglement_summary")
        m = last(e)
        numbers = {"valley_entropy_mean": m["valley_entropy"].mean(), "valley_entropy_sd": m["valley_entropy"].std(),
                   "modules": len(m), "page_mean": m["valley_page_entropy"].mean(), "depth_mean": m["valley_depth"].mean()}
        adapters = m[np.log(m["rank_bound"]) < m["valley_max_entropy"] - 1e-12]
        if len(adapters):
            numbers["below_ln_r"] = int((adapters["valley_entropy"] <= np.log(adapters["rank_bound"]) + 1e-9).sum())
            numbers["rank_bounded"] = len(adapters)
            numbers["ln_r"] = math.log(adapters["rank_bound"].iloc[0])
            numbers["room_below_ln_r"] = (np.log(adapters["rank_bound"]) - adapters["valley_entropy"]).mean()
        numbers["neighbour_depth_mean"] = m["valley_neighbour_depth"].mean()
        numbers["width_median"] = m["valley_width"].median()
        numbers["deepest_at_cut"] = int((m["deepest_cut"] == m["valley_cut"]).sum())
        numbers["shaped"] = len(m)
        gauss = e[e["source"] == "random"]
        if len(gauss):
            numbers["control_depth_mean"] = gauss["valley_depth"].mean()
            numbers["depth_minus_control"] = m["valley_depth"].mean() - gauss["valley_depth"].mean()
        out["entanglement"] = numbers
    if "spectra" in has:
        s = last(parquet(folder, run, "spectra"))
        out["spectra"] = {"stable_rank_median": s["stable_rank"].median(), "effective_rank_median": s["effective_rank"].median(),
                          "utilization_median": s["utilization"].median(), "modules": len(s),
                          "energy_rank_99_median": s["energy_rank_99"].median(), "intruders": s["intruder_count"].sum()}
    if "attention_summary" in has:
        a = last(parquet(folder, run, "attention_summary"))
        f = last(parquet(folder, run, "attention_token_fits"))
        out["attention"] = {"attention_tv_mean": a["attention_tv"].mean(), "entropy_diff_mean": a["entropy_diff"].mean(),
                            "rel_change_mean": np.nanmean(np.r_[a["q_rel_change"], a["v_rel_change"]]),
                            "token_profiles": len(f), "cardy_verdicts": int((f["verdict"] == "cardy").sum()),
                            "neither_verdicts": int((f["verdict"] == "neither fits").sum()),
                            "cardy_c_median": f["cardy_c"].median(), "cardy_c_q25": f["cardy_c"].quantile(0.25),
                            "cardy_c_q75": f["cardy_c"].quantile(0.75),
                            "cardy_c_length_max": f.groupby("seq_len")["cardy_c"].median().max(),
                            "cardy_c_layer_min": f.groupby("layer")["cardy_c"].median().min(),
                            "cardy_r2_median": f["cardy_r2"].median(),
                            "base_cardy_c_median": f["base_cardy_c"].median()}
    if "thresholds" in has:
        t = last(parquet(folder, run, "thresholds"))
        top = t.sort_values("ratio").iloc[-1]
        numbers = {"ratio_max": t["ratio"].max(), "ratio_median": t["ratio"].median(),
                   "ratio_max_seq_len": top["seq_len"], "ratio_max_layer": top["layer"], "ratio_max_head": top["head"]}
        if t["gamma_lora"].notna().any():
            numbers["gamma_lora_max"] = t["gamma_lora"].max()
        numbers["ratio_as_max"] = t["ratio_as"].max()
        numbers["logit_max"] = t["logit_max"].max()
        numbers["logit_max_seq_len"] = t.sort_values("logit_max")["seq_len"].iloc[-1]
        numbers["evt_ratio_median"] = np.median(np.r_[t["evt_ratio_q"], t["evt_ratio_k"]])
        g = parquet(folder, run, "threshold_growth")
        g = g[g["checkpoint"] == t["checkpoint"].iloc[0]]
        numbers["growth_lengths"] = g["lengths"].max()
        if g["lengths"].max() >= 3:  # a growth is stated only over three lengths or more, beside the control's
            numbers.update(slope_median=g["slope"].median(), evt_slope_median=g["evt_slope"].median(),
                           slope_above_control=int((g["slope"] > g["evt_slope"]).sum()))
        out["thresholds"] = numbers
    if "msu" in has:
        u = last(parquet(folder, run, "msu"))
        out["msu"] = {"effective_units_median": u["effective_units"].median(), "modules": len(u),
                      "effective_units_ratio_median": u["effective_units_ratio"].median(),
                      "cross_energy_mean": u["cross_energy"].mean(), "permutation_error_max": u["permutation_error_max"].max()}
    if "msu_pairs" in has:
        p = parquet(folder, run, "msu_pairs")
        out["msu_pairs"] = {"concat_sum_error_max": p["concat_sum_error"].max(), "modules": len(p),
                            "cross_term_error_mean": p["cross_term_error"].mean(),
                            "cross_term_error_min": p["cross_term_error_min"].min(),
                            "cross_term_error_max": p["cross_term_error_max"].max(),
                            "fedavg_error_mean": p["fedavg_error"].mean()}
    if "no_hair" in has:  # per pair: inside (mean over layers), layer-output and row distances (means over rows)
        h = parquet(folder, run, "no_hair")
        numbers = {}
        for (a, b), rows in h.groupby(["first", "second"]):
            pair = f"{a} : {b}"
            numbers[f"inside[{pair}]"] = rows.drop_duplicates("layer")["inside"].mean()
            for m in ("layer_output", "rows"):
                r = rows[rows["measure"] == m]
                numbers[f"{m}[{pair}]"] = r["distance"].mean()
                numbers[f"{m}_first_base[{pair}]"] = r["first_base"].mean()
                numbers[f"{m}_second_base[{pair}]"] = r["second_base"].mean()
        out["no_hair"] = numbers
    if "merge" in has:
        g = parquet(folder, run, "merge")
        numbers = {}
        for merged, rows in g.groupby("checkpoint"):
            numbers[f"rel_fro_error[{merged}]"] = rows["rel_fro_error"].mean()
            numbers[f"optimal_rel_fro_error[{merged}]"] = rows["optimal_rel_fro_error"].mean()
            numbers[f"k[{merged}]"] = rows["k"].max()
        out["merge"] = numbers
    if "adapter_similarity" in has:  # the most alike pair by mean cosine over modules, and its φ(1, 1) left
        p = parquet(folder, run, "adapter_similarity")
        p = p[p["note"] == ""]
        d = parquet(folder, run, "deltas").drop_duplicates("module").set_index("module")
        means = p.groupby(["first", "second"])["cosine"].mean()
        top = means.idxmax()
        g = parquet(folder, run, "subspace_similarity")
        g = g[(g["first"] == top[0]) & (g["second"] == top[1]) & (g["side"] == "left") & (g["i"] == 1) & (g["j"] == 1)]
        mods = p["module"].unique()
        out["similarity"] = {"pairs": len(means), "modules": len(mods), "cosine_top": means.max(),
                             "cosine_chance": (1 / np.sqrt(d.loc[mods, "rows"] * d.loc[mods, "cols"])).mean(),
                             "phi_11_top": g["phi"].mean(), "phi_11_chance": (1 / d.loc[g["module"], "rows"]).mean(),
                             "sign_conflict_top": p[(p["first"] == top[0]) & (p["second"] == top[1])]["sign_conflict"].mean()}
    if "forgetting" in has:  # the last checkpoint at the longest L, per text set
        f = last(parquet(folder, run, "forgetting"))
        f = f[f["seq_len"] == f["seq_len"].max()].set_index("text_set")
        numbers = {"seq_len": f["seq_len"].iloc[0]}
        for text_set, r in f.iterrows():
            for c in ("kl", "kl_lo", "kl_hi", "loss_change", "loss_change_lo", "loss_change_hi"):
                numbers[f"{c.replace('kl', f'kl_{text_set}', 1) if c.startswith('kl') else c.replace('loss_change', f'loss_change_{text_set}', 1)}"] = r[c]
        lay = parquet(folder, run, "forgetting_layers")
        lay = lay[(lay["checkpoint"] == f["checkpoint"].iloc[0]) & (lay["seq_len"] == f["seq_len"].iloc[0])
                  & (lay["text_set"] == "reference")]
        numbers["cosine_distance_max"] = lay["cosine_distance"].max()
        out["forgetting"] = numbers
    if "esd" in has:  # α of W + ΔW, of W and of ΔW per module at the last checkpoint, and the shift
        e = parquet(folder, run, "esd")
        e = e[e["checkpoint"] == last(e)["checkpoint"].iloc[0]]
        a = e.pivot(index="module", columns="source", values="alpha")
        tuned, shift = a["tuned"].dropna(), (a["tuned"] - a["weight"]).dropna()
        numbers = {"alpha_median": tuned.median(), "alpha_min": tuned.min(), "alpha_max": tuned.max(), "modules": len(tuned),
                   "alpha_weight_median": a["weight"].median(), "alpha_weight_min": a["weight"].min(),
                   "alpha_weight_max": a["weight"].max(), "alpha_shift_median": shift.median(),
                   "alpha_shift_min": shift.min(), "alpha_shift_max": shift.max(), "alpha_lower": int((shift < 0).sum()),
                   "paired": len(shift), "alpha_delta_median": a["delta"].median()}
        numbers.update({f"alpha[{m}]": tuned[m] for m in tuned.sort_values().index[:3]})
        controls = parquet(folder, run, "esd")
        for source, name in (("random", "alpha_control_median"), ("random_lora", "alpha_lora_control_median")):
            if (controls["source"] == source).any():
                numbers[name] = controls.loc[controls["source"] == source, "alpha"].median()
        out["esd"] = numbers
    if "intruders" in has:  # at the spectra probe's ε = 0.5, k = 10, on both sides
        i = last(parquet(folder, run, "intruders"))
        i = i[(i["threshold"] == 0.5) & (i["top_k"] == 10)]
        numbers = {"threshold": 0.5, "top_k": 10}
        for side in ("left", "right"):
            s = i[i["side"] == side]
            numbers.update({f"intruders_{side}": s["intruder_count"].sum(), f"examined_{side}": s["examined"].sum(),
                            f"modules_{side}": len(s)})
            if s["intruder_count"].max() > 0:
                numbers[f"most_{side}"] = s["intruder_count"].max()
        out["intruders"] = numbers
    return out


def sentences_by(findings, run):
    return {f.key: s for f in findings for s in f.sentences if s.run == run}


def assert_numbers(got: dict, want: dict, where: str):
    assert set(want) <= set(got), (where, sorted(set(want) - set(got)))
    for name, value in want.items():
        assert got[name] == pytest.approx(float(value), rel=1e-12, abs=1e-15), (where, name)


@pytest.fixture(scope="module")
def runs(lab_results_folder):
    return load.runs_in(lab_results_folder.results)


@pytest.fixture(scope="module")
def together(runs):
    return summarize(runs)


RUNS = [lab_results.LORA_RUN, lab_results.MARKUP_RUN, lab_results.MERGE_RUN]


@pytest.mark.parametrize("run", RUNS)
def test_numbers_equal_pandas_on_the_parquet_files_with_several_runs(lab_results_folder, together, run):
    folder = lab_results_folder.results
    got = sentences_by(together, run)
    want = expected(folder, run)
    assert set(got) == set(want), run  # a sentence exactly for each family whose table the run has
    for family, numbers in want.items():
        assert_numbers(got[family].numbers, numbers, f"{run}/{family}")


@pytest.mark.parametrize("run", RUNS)
def test_one_run_alone_gives_the_same_numbers_and_no_comparison(lab_results_folder, together, run):
    alone = summarize([open_run(lab_results_folder.results / run)])
    assert not [s for f in alone for s in f.sentences if s.run is None]
    several = sentences_by(together, run)
    for family, sentence in sentences_by(alone, run).items():
        assert sentence.numbers == several[family].numbers, family


def test_the_run_with_controls_compares_its_valley_with_them_and_the_other_does_not(together):
    lora = sentences_by(together, lab_results.LORA_RUN)["entanglement"]
    full = sentences_by(together, lab_results.MARKUP_RUN)["entanglement"]
    assert "control_depth_mean" in lora.numbers and "Gaussian controls" in lora.plain()
    assert "control_depth_mean" not in full.numbers and "control" not in full.plain()
    assert "below_ln_r" in lora.numbers and "below_ln_r" not in full.numbers  # ln r only where r < the shape's rank


def test_a_run_lacking_a_table_gets_no_sentence_about_it(lab_results_folder, together):
    for run in RUNS:
        present = {p.stem for p in (lab_results_folder.results / run).glob("*.parquet")}
        families = set(sentences_by(together, run))
        assert families == {k for k, t in FAMILY_TABLE.items() if t in present}, run
    partial = summarize(load.runs_in(lab_results_folder.partial))
    assert [f.key for f in partial] == ["deltas"]
    assert summarize(load.runs_in(lab_results_folder.empty)) == []


def test_comparisons_rank_the_runs_that_have_the_family(together, lab_results_folder):
    folder = lab_results_folder.results
    compared = {f.key: s for f in together for s in f.sentences if s.run is None}
    assert set(compared) == {"deltas", "entanglement", "spectra", "attention", "thresholds", "esd", "intruders",
                             "forgetting"}  # two runs have these
    depth = {run: last(parquet(folder, run, "entanglement_summary"))["valley_depth"].mean()
             for run in (lab_results.LORA_RUN, lab_results.MARKUP_RUN)}
    text = compared["entanglement"].plain()
    deepest = max(depth, key=depth.get)
    assert text.index(deepest) < text.index(min(depth, key=depth.get))  # the deepest valley is named first
    assert compared["entanglement"].numbers[f"depth_mean[{deepest}]"] == pytest.approx(depth[deepest], rel=1e-12)
    mean_norm = {run: last(parquet(folder, run, "deltas"))["fro_norm"].mean() for run in depth}
    assert compared["deltas"].numbers == pytest.approx({f"mean_fro_norm[{r}]": v for r, v in mean_norm.items()})


def test_every_thresholds_sentence_carries_the_asymptotic_caveat(together):
    sentences = [s for f in together if f.key == "thresholds" for s in f.sentences if s.run is not None]
    assert sentences and all(ASYMPTOTIC_CAVEAT in s.plain() for s in sentences)
    assert "asymptotic" in ASYMPTOTIC_CAVEAT and "not a verdict" in ASYMPTOTIC_CAVEAT


def test_every_number_points_at_its_familys_headline_figure(together):
    for family in together:
        for sentence in family.sentences:
            figures = {p.figure for p in sentence.parts if hasattr(p, "figure")}
            assert figures == {family.anchor} == {f"fig-{family.key}"}
