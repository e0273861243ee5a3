"""analyses/msu_merge.py end to end on a tiny BERT and two small corpora: fine-tunes per seed, every
merge evaluated on each held-out corpus, the per-seed values and the separation verdicts written."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import numpy as np
import pandas as pd

import builders
from conftest import bert_base

SCRIPT = Path(__file__).resolve().parents[2] / "analyses" / "msu_merge.py"


def _corpus(path, words, seed, n=60):
    rng = np.random.default_rng(seed)
    path.write_text("\n".join(" ".join(rng.choice(words, 5)) + ". " + " ".join(rng.choice(words, 6)) + "."
                              for _ in range(n)) + "\n")
    return path


def test_msu_merge_analysis_end_to_end(tmp_path):
    base, _ = bert_base(tmp_path / "bert")
    words = list(dict.fromkeys(builders.WORDS))
    one, two = _corpus(tmp_path / "one.txt", words[:12], 1), _corpus(tmp_path / "two.txt", words[12:], 2)
    script = runpy.run_path(str(SCRIPT))
    args = ["--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "out"), "--model", str(base), "--seeds", "2",
            "--steps", "2", "--r", "2", "--batch-size", "4", "--seq-len", "8", "--windows", "4",
            "--corpus", f"one={one}", "--corpus", f"two={two}"]
    assert script["main"](args) == 0
    text = (tmp_path / "out" / "msu_merge.md").read_text()
    assert (tmp_path / "out" / "msu_merge.png").stat().st_size > 1000
    for corpus in ("one", "two"):
        section = text.split(f"## Held-out `{corpus}`")[1].split("##")[0]
        for model in ("base", "adapter:one", "adapter:two", "stack", "linear", "svd", "lego", "lego-oracle"):
            row = re.search(rf"^\| {re.escape(model)} \| ([^|]+) \| ([^|]+) \|$", section, re.M)
            assert row, (corpus, model)
            assert len(row.group(2).split(" / ")) == 2  # one value per seed
        assert "lego against svd at equal rank" in section
        assert re.search(r"\((separated|not separated at 2 seeds)\)", section)
    # the values are those of the merge_eval tables lab merge wrote for each seed
    ev = pd.concat(pd.read_parquet(p) for p in (tmp_path / "work" / "results").glob("seed*/merge_eval.parquet"))
    lego = ev[(ev.kind == "merged") & (ev.method == "lego") & (ev.texts == "one")].loss
    assert f"{lego.mean():.4f}" in text.split("## Held-out `one`")[1].split("| lego |")[1].splitlines()[0]
    # the held-out fifth is not in the training file
    held = set((tmp_path / "work" / "corpora" / "one.txt").read_text().splitlines())
    train = set((tmp_path / "work" / "corpora" / "one-train.txt").read_text().splitlines())
    assert held and train and not held & train
