"""lab demo's MPS Adaptation run and its squeeze, in a tiny configuration: both are analysed, the
tables match numpy computations from the checkpoint files, a second demo reuses them, and the
analysis script reports the measured numbers."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from lab.demo import run_demo
from lab.finetune.mps_layout import cut_bounds

TINY = dict(ranks=(2, 4), full=False, steps=6, save_every=3, batch_size=4, max_length=16, progress=False, report=False,
            mps=(4, 2), squeeze=(4, 2), merge=2)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return run_demo(tmp_path_factory.mktemp("demo_mps"), **TINY)


def _entropy(M: np.ndarray) -> float:
    s = np.linalg.svd(M, compute_uv=False)
    p = s ** 2 / (s ** 2).sum()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _mps_dense(ckpt: Path) -> dict[str, np.ndarray]:
    config = json.loads((ckpt / "mps_adapter_config.json").read_text())
    raw = load_file(ckpt / "mps_adapter_model.safetensors")
    out = {}
    for m in config["modules"]:
        A = np.einsum("aic,cj->aij", raw[f"{m}.mps_C1"].astype(np.float64), raw[f"{m}.mps_C2"].astype(np.float64)).reshape(config["r"], -1)
        out[m] = config["alpha"] / config["r"] * raw[f"{m}.mps_B"].astype(np.float64) @ A
    return out


def _lora_dense(ckpt: Path) -> dict[str, np.ndarray]:
    config = json.loads((ckpt / "adapter_config.json").read_text())
    raw = load_file(ckpt / "adapter_model.safetensors")
    return {k.removeprefix("base_model.model.").removesuffix(".lora_A.weight"):
            config["lora_alpha"] / config["r"] * raw[k.replace("lora_A", "lora_B")].astype(np.float64) @ raw[k].astype(np.float64)
            for k in raw if k.endswith("lora_A.weight")}


def test_mps_run_is_analysed_from_its_cores(demo):
    run = demo.runs["mps-r4"]
    assert run.complete and "attention" not in run.tables() and "entanglement" in run.tables()
    deltas = run.table("deltas")
    assert set(deltas.kind) == {"mps"} and (deltas.params == 384 * 4 + 4 * 16 * 2 + 2 * 24).all()
    summary = run.table("entanglement_summary")
    dense = _mps_dense(demo.finetunes["mps-r4"] / "checkpoint-6")
    rows = summary[(summary.source == "delta") & (summary.step == 6)].set_index("module")
    assert sorted(rows.index) == sorted(dense)
    for module, M in dense.items():
        assert rows.loc[module, "valley_entropy"] == pytest.approx(_entropy(M), abs=1e-6)
    # χ's bound at the d1|d2 cut, from numpy on the dense update
    b = cut_bounds(384, 16, 24, 2, 4)
    k = int(np.flatnonzero(b.d_right == 24)[0])
    profile = run.table("entanglement")
    at = profile[(profile.source == "delta") & (profile.step == 6) & (profile.cut == b.cuts[k])]
    assert len(at) == 12 and (at.entropy <= math.log(2) + 1e-9).all()
    for module, M in dense.items():
        assert at.set_index("module").loc[module, "entropy"] == pytest.approx(_entropy(M.reshape(-1, 24)), abs=1e-6)


def test_squeeze_run_is_the_truncated_svd_of_the_source(demo):
    source = _lora_dense(demo.finetunes["lora-r4"] / "checkpoint-6")
    run = demo.runs["squeeze-r2"]
    rows = run.table("entanglement_summary")
    rows = rows[rows.source == "delta"].set_index("module")
    deltas = run.table("deltas").set_index("module")
    for module, M in source.items():
        U, s, Vt = np.linalg.svd(M, full_matrices=False)
        best = (U[:, :2] * s[:2]) @ Vt[:2]
        assert rows.loc[module, "valley_entropy"] == pytest.approx(_entropy(best), abs=1e-5)
        assert deltas.loc[module, "fro_norm"] == pytest.approx(np.linalg.norm(best), rel=1e-5)
        assert deltas.loc[module, "rank_bound"] == 2
    assert (demo.workdir / "squeezes" / "squeezes" / "squeeze.parquet").is_file()


def test_second_demo_reuses_mps_and_squeeze(demo):
    again = run_demo(demo.workdir, **TINY)
    assert {"finetune:mps-r4", "squeeze:squeeze-r2", "analyze:mps-r4", "analyze:squeeze-r2"} <= set(again.reused)
    assert {"merge:stack", "merge:svd-k2", "merge:lego-k2"} <= set(again.reused)


def test_demo_merges_its_lora_runs_with_every_method(demo):
    """``merge=k``: the LoRA runs' last checkpoints merged by stack (exact), svd and lego at rank k into
    loadable PEFT adapters, their errors in the results' ``merges`` run (this module's demo has
    LoRA r = 2 and 4)."""
    from peft import PeftModel
    from transformers import AutoModel

    from lab.demo import MERGE_METHODS
    from lab.finetune.models import minilm_path
    from lab.store import open_run

    assert set(demo.merges) == set(MERGE_METHODS)
    table = open_run(demo.workdir / "results" / "merges").table("merge")
    by_method = {m: table[table.method == m] for m in MERGE_METHODS}
    assert (by_method["stack"].rel_fro_error < 1e-6).all() and (by_method["stack"].k == 6).all()  # Σ r_j, float32 storage
    svd = by_method["svd"]
    assert (svd.k == 2).all() and np.allclose(svd.rel_fro_error, svd.optimal_rel_fro_error, rtol=1e-4, atol=1e-6)
    assert (by_method["lego"].rel_fro_error >= by_method["lego"].optimal_rel_fro_error - 1e-6).all()
    for folder in demo.merges.values():
        PeftModel.from_pretrained(AutoModel.from_pretrained(minilm_path()), folder)  # loads: a real PEFT adapter


def test_analysis_script_reports_the_measured_numbers(demo, tmp_path):
    path = Path(__file__).resolve().parents[2] / "analyses" / "mps_and_squeeze.py"
    spec = importlib.util.spec_from_file_location("mps_and_squeeze", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--workdir", str(demo.workdir), "--out", str(tmp_path), "--held-out", "64"]) == 0
    png, md = tmp_path / "mps_and_squeeze.png", tmp_path / "mps_and_squeeze.md"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    dense = _mps_dense(demo.finetunes["mps-r4"] / "checkpoint-6")
    mean_s = np.mean([_entropy(M) for M in dense.values()])
    assert f"has mean entropy {mean_s:.3f} nats at the row|column cut" in text
    governed = int(cut_bounds(384, 16, 24, 2, 4).governed.sum())
    assert f"The bound held at {12 * governed} of {12 * governed} (module, cut) pairs where it governs" in text
    assert "| squeeze-r2 |" in text and "| lora-r2 |" in text and "Held-out loss" in text
