"""`lab demo` in a tiny configuration (one LoRA rank and full fine-tuning, two short steps): the
fine-tunes are analysed, the valley numbers match an SVD of the checkpoints computed here, the
cache is reused only when complete and unchanged, and the analysis script reads the runs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from lab.demo import DEMO_MODULES, one_blas_thread, run_demo, valley_summary
from lab.finetune.models import minilm_path
from lab.finetune.train import COMPLETE_FILE

TINY = dict(ranks=(4,), full=True, steps=2, save_every=1, batch_size=4, max_length=16, progress=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    return run_demo(workdir, report=True, **TINY)


def _row_col_entropy(delta: np.ndarray) -> float:
    """S at the row|column cut, independently: the Shannon entropy of ΔW's normalised σ²."""
    with one_blas_thread():  # a 384×384 SVD is 25× slower with two threads on a busy machine
        s = np.linalg.svd(delta.astype(np.float64), compute_uv=False)
    p = s**2 / np.sum(s**2)
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)))


def test_demo_runs_are_complete_and_cover_the_grid(demo):
    assert set(demo.finetunes) == {"lora-r4", "full"} and set(demo.runs) == {"lora-r4", "full"}
    for name, run in demo.runs.items():
        assert run.complete
        deltas = run.table("deltas")
        assert sorted(deltas.step.unique()) == [1, 2]
        assert set(deltas.role) == {"q", "v"} and len(deltas) == 2 * 12  # 6 layers × (query, value) per step
        assert run.manifest["options"]["controls"] is True
        assert (demo.finetunes[name] / COMPLETE_FILE).is_file()


def test_valley_numbers_match_an_svd_of_the_checkpoints(demo):
    base = {k: v for k, v in load_file(minilm_path() / "model.safetensors").items()}
    for name, run in demo.runs.items():
        summary = run.table("entanglement_summary")
        for step in (1, 2):
            ckpt = demo.finetunes[name] / f"checkpoint-{step}"
            rows = summary[(summary.source == "delta") & (summary.step == step)]
            assert len(rows) == 12
            if name.startswith("lora"):
                cfg = json.loads((ckpt / "adapter_config.json").read_text())
                raw = load_file(ckpt / "adapter_model.safetensors")
                scale = cfg["lora_alpha"] / cfg["r"]
            else:
                tuned = load_file(ckpt / "model.safetensors")
            for row in rows.itertuples():
                if name.startswith("lora"):
                    prefix = f"base_model.model.{row.module}"
                    delta = scale * raw[f"{prefix}.lora_B.weight"].astype(np.float64) @ raw[f"{prefix}.lora_A.weight"].astype(np.float64)
                else:
                    key = f"{row.module}.weight"
                    delta = tuned[key].astype(np.float64) - base[key].astype(np.float64)
                expected = _row_col_entropy(delta)
                assert row.valley_entropy == pytest.approx(expected, abs=1e-6), f"{name} step {step} {row.module}"
                if name.startswith("lora"):
                    assert row.valley_entropy <= math.log(4) + 1e-9


def test_summary_table_averages_the_modules(demo):
    s = demo.summary
    assert s.equals(valley_summary(list(demo.runs.values())))
    assert (demo.workdir / "summary.csv").is_file()
    for name, run in demo.runs.items():
        t = run.table("entanglement_summary")
        t = t[(t.source == "delta") & (t.step == 2)]
        row = s[(s.run == name) & (s.what == "ΔW") & (s.step == 2)].iloc[0]
        assert row.entropy == pytest.approx(t.valley_entropy.mean(), rel=1e-12)
        assert row.ln_r == pytest.approx(math.log(t.rank_bound.iloc[0]))
    # the run's random controls are in the summary next to the updates
    assert {"random Gaussian", "random B·A"} <= set(s.what)


def test_report_is_written_when_the_report_module_exists(demo):
    import importlib

    if getattr(importlib.import_module("lab.report"), "write_report", None) is None:
        assert demo.report == []
    else:
        assert demo.report and all(p.is_file() and p.stat().st_size > 0 for p in demo.report)


def test_second_demo_reuses_only_complete_unchanged_work(demo):
    again = run_demo(demo.workdir, report=False, **TINY)
    assert sorted(again.reused) == sorted(f"{what}:{name}" for what in ("finetune", "analyze") for name in ("lora-r4", "full"))
    assert again.summary.equals(demo.summary)

    # an unfinished fine-tune (no completion marker) is redone, and so is its analysis
    os.remove(demo.finetunes["full"] / COMPLETE_FILE)
    third = run_demo(demo.workdir, report=False, **TINY)
    assert "finetune:full" not in third.reused and "analyze:full" not in third.reused
    assert "finetune:lora-r4" in third.reused and (demo.finetunes["full"] / COMPLETE_FILE).is_file()
    # same seed, same weights: the redone fine-tune gives the same valley numbers
    pd_equal = third.summary.reset_index(drop=True).equals(demo.summary.reset_index(drop=True))
    assert pd_equal


def test_analysis_script_reports_the_measured_numbers(demo, tmp_path):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "analyses" / "entanglement_valley.py"
    spec = importlib.util.spec_from_file_location("entanglement_valley", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--workdir", str(demo.workdir), "--out", str(tmp_path)]) == 0
    png, md = tmp_path / "entanglement_valley.png", tmp_path / "entanglement_valley.md"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    t = demo.runs["lora-r4"].table("entanglement_summary")
    mean_s = t[(t.source == "delta") & (t.step == 2)].valley_entropy.mean()
    assert f"| 4 | 2 | 12 | {mean_s:.3f} |" in text
    assert "S ≤ ln r held for 24 of 24 LoRA matrices (all)." in text


def test_demo_modules_pattern_selects_query_and_value_only():
    import re

    names = [f"encoder.layer.{i}.attention.self.{m}" for i in range(2) for m in ("query", "key", "value")]
    names += ["encoder.layer.0.attention.output.dense", "encoder.layer.0.intermediate.dense"]
    assert [n for n in names if re.search(DEMO_MODULES, n)] == [n for n in names if n.endswith(("query", "value"))]
