"""The esd and intruders findings across runs: the comparison with full fine-tuning equals pandas on the parquet
files (over the modules every run has), says "not separated" with one run per method and "separated" only when
the runs of each method lie apart; without a full fine-tune there is no intruder comparison, only per-run
sentences. Extra runs are copies of the builder's run folders on disk under new names (a second "seed" of a
method that repeats the first exactly: what the rule must call separated when the two methods differ)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

import lab_results
from lab.present import load
from lab.present.findings import summarize
from lab.present.sentences import Writer, against_full, configurations
from lab.store import open_run


def parquet(folder, run, table) -> pd.DataFrame:
    return pd.read_parquet(folder / run / f"{table}.parquet")


def last_checkpoint_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the last checkpoint (largest step, none before every step, then name), controls left out, by pandas."""
    df = df[df["checkpoint"] != "controls"]
    keys = df[["checkpoint", "step"]].drop_duplicates("checkpoint")
    return df[df["checkpoint"] == sorted(zip(keys["step"].astype(float).fillna(-1.0), keys["checkpoint"]))[-1][1]]


def copy_run(source, target, name: str):
    """A copy of a run folder named ``name`` (manifest and every table's run column)."""
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["run"] = name
    (target / "manifest.json").write_text(json.dumps(manifest))
    for path in target.glob("*.parquet"):
        df = pd.read_parquet(path)
        if "run" in df.columns:
            df.assign(run=name).to_parquet(path, index=False)
    return open_run(target)


def comparison(findings, family):
    found = [s for f in findings if f.key == family for s in f.sentences if s.run is None]
    return found[0] if found else None


@pytest.fixture(scope="module")
def runs(lab_results_folder):
    return load.runs_in(lab_results_folder.results)


def test_intruders_against_full_fine_tuning_equal_pandas_over_the_common_modules(lab_results_folder, runs):
    folder = lab_results_folder.results
    sentence = comparison(summarize(runs), "intruders")
    counts = {run: last_checkpoint_rows(parquet(folder, run, "intruders")) for run in (lab_results.LORA_RUN, lab_results.MARKUP_RUN)}
    counts = {run: c[(c["threshold"] == 0.5) & (c["top_k"] == 10) & (c["side"] == "left")] for run, c in counts.items()}
    common = set(counts[lab_results.LORA_RUN]["module"]) & set(counts[lab_results.MARKUP_RUN]["module"])
    assert common == set(counts[lab_results.MARKUP_RUN]["module"])  # the full run's q/v inside the LoRA's q/v/down
    want = {f"intruders_mean[{run}]": c[c["module"].isin(common)]["intruder_count"].mean() for run, c in counts.items()}
    want.update(common_modules=len(common), threshold=0.5, top_k=10)
    assert sentence.numbers == pytest.approx(want, rel=1e-12)
    full = lab_results.MARKUP_RUN
    assert (f"lora r = {lab_results.RANK} (1 run: {lab_results.LORA_RUN}) against full fine-tuning (1 run: {full}): "
            "not separated (one run on a side") in sentence.plain()


def test_esd_comparison_ranks_the_median_alpha_shift_and_does_not_separate_single_runs(lab_results_folder, runs):
    folder = lab_results_folder.results
    sentence = comparison(summarize(runs), "esd")
    want = {}
    for run in (lab_results.LORA_RUN, lab_results.MARKUP_RUN):
        e = last_checkpoint_rows(parquet(folder, run, "esd"))
        a = e.pivot(index="module", columns="source", values="alpha")
        want[f"alpha_shift_median[{run}]"] = (a["tuned"] - a["weight"]).dropna().median()
    assert sentence.numbers == pytest.approx(want, rel=1e-12)
    text = sentence.plain()
    lowest = min(want, key=want.get)[len("alpha_shift_median["):-1]
    other = max(want, key=want.get)[len("alpha_shift_median["):-1]
    assert text.index(lowest) < text.index(other)  # most negative first
    assert "not separated" in text


def test_two_copies_of_each_method_separate_and_no_full_run_means_no_intruder_comparison(lab_results_folder, tmp_path):
    folder = lab_results_folder.results
    lora = [copy_run(folder / lab_results.LORA_RUN, tmp_path / f"lora-{i}", f"lora-{i}") for i in range(2)]
    full = [copy_run(folder / lab_results.MARKUP_RUN, tmp_path / f"full-{i}", f"full-{i}") for i in range(2)]
    both = summarize(lora + full)
    verdict = f"lora r = {lab_results.RANK} (2 runs: lora-0, lora-1) against full fine-tuning (2 runs: full-0, full-1): separated."
    assert verdict in comparison(both, "intruders").plain() and verdict in comparison(both, "esd").plain()
    only_lora = summarize(lora)
    assert comparison(only_lora, "intruders") is None  # nothing to hold the counts against
    assert {s.run for f in only_lora if f.key == "intruders" for s in f.sentences} == {"lora-0", "lora-1"}
    assert "against full" not in comparison(only_lora, "esd").plain()


@pytest.mark.parametrize("lora, full, verdict", [
    ([1.0, 1.1], [3.0, 3.2], "separated."),
    ([1.0, 3.1], [3.0, 3.2], "not separated (the runs' values overlap)."),
    ([1.0], [3.0, 3.2], "not separated (one run on a side"),
])
def test_the_verdict_follows_the_seeds_rule(lora, full, verdict):
    values = {f"l{i}": v for i, v in enumerate(lora)} | {f"f{i}": v for i, v in enumerate(full)}
    methods = {run: ("lora" if run.startswith("l") else "full") for run in values}
    w = Writer("intruders", None)
    against_full(w, values, methods)
    assert verdict in w.sentence.plain()


def test_configurations_are_the_method_and_the_adapters_ranks_at_the_last_checkpoint(lab_results_folder, runs):
    got = configurations(runs)
    folder = lab_results_folder.results
    ranks = last_checkpoint_rows(parquet(folder, lab_results.LORA_RUN, "deltas"))["rank_bound"].unique()
    assert got[lab_results.LORA_RUN] == "lora r = " + "/".join(str(int(r)) for r in sorted(ranks))
    assert got[lab_results.MARKUP_RUN] == "full" and got[lab_results.MERGE_RUN] == ""


def test_a_run_with_intruders_says_where_the_sweep_finds_the_first(lab_results_folder, runs):
    folder = lab_results_folder.results
    sentences = {s.run: s for f in summarize(runs) if f.key == "intruders" for s in f.sentences if s.run}
    for run, sentence in sentences.items():
        rows = last_checkpoint_rows(parquet(folder, run, "intruders"))
        sweep = rows[(rows["side"] == "left") & (rows["top_k"] == 10)].groupby("threshold")["intruder_count"].sum()
        found = sweep[sweep > 0]
        if found.empty:
            assert sentence.numbers["largest_threshold"] == sweep.index.max()
        else:
            assert sentence.numbers["first_threshold"] == found.index.min()
            assert sentence.numbers["first_intruders"] == found.iloc[0]
