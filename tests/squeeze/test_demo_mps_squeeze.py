"""lab demo's MPS Adaptation run and its squeeze, in a tiny configuration: both are analysed, the
tables match numpy computations from the checkpoint files, a second demo reuses them, and the
analysis script reports the measured numbers."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from lab.demo import run_demo
from lab.finetune.mps_layout import cut_bounds

TINY = dict(ranks=(2, 4), full=False, steps=6, save_every=3, batch_size=4, max_length=16, progress=False, report=False,
            mps=(4, 2), squeeze=(4, 2), merge=2, windows={"seq_len": (16, 24, 32), "windows": 2})


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


def _script():
    path = Path(__file__).resolve().parents[2] / "analyses" / "mps_and_squeeze.py"
    spec = importlib.util.spec_from_file_location("mps_and_squeeze", path)
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script  # its dataclass looks its module up there
    spec.loader.exec_module(script)
    return script


def test_separated_means_intervals_that_do_not_overlap():
    import pandas as pd

    script = _script()
    a, b = pd.Series([1.0, 1.2, 1.1]), pd.Series([2.0, 2.1, 1.9])
    assert script.separated(a, b) and script.separated(b, a)
    # mean ± sd 1.1 ± 0.1 against 1.25 ± 0.212: the intervals overlap
    assert not script.separated(a, pd.Series([1.1, 1.4, 1.25]))


def _table_rows(text: str, first: str) -> list[list[str]]:
    """The rows of the markdown table whose header starts with ``first``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first} |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_analysis_script_compares_the_squeeze_variants_over_seeds(tmp_path):
    """The script in a tiny setting (LoRA r = 4 squeezed to 2, 6 steps, 2 seeds, its own workdir):
    every variant ends at rank 2, and each per-seed entropy is numpy's on the checkpoint files
    (Post-, Cont-, In-Squeeze, LoRA r = 2), their mean ± sd in the summary."""
    script = _script()
    work = tmp_path / "work"
    args = ["--workdir", str(work), "--out", str(tmp_path), "--held-out", "64", "--seeds", "2", "--ranks", "4:2",
            "--steps", "6", "--save-every", "3", "--cont-steps", "3", "--batch-size", "4", "--max-length", "16", "--chi", "2"]
    assert script.main(args) == 0
    png, md = tmp_path / "mps_and_squeeze.png", tmp_path / "mps_and_squeeze.md"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    seeds = work / "squeeze-seeds"
    folders = {
        "LoRA r=2": lambda s: seeds / f"seed-{s}" / "finetunes" / "lora-r2" / "checkpoint-6",
        "Post-Squeeze": lambda s: seeds / f"seed-{s}" / "squeezes" / "post-r2",
        "Cont-Squeeze": lambda s: seeds / f"seed-{s}" / "squeezes" / "cont-r2-steps" / "checkpoint-6",
        "In-Squeeze": lambda s: seeds / f"seed-{s}" / "finetunes" / "in-squeeze-r4-r2" / "checkpoint-6",
    }
    per_seed = {(int(r[0]), r[1]): r for r in _table_rows(text, "seed")}
    for label, where in folders.items():
        values = []
        for seed in (0, 1):
            dense = _lora_dense(where(seed))
            assert all(np.linalg.matrix_rank(M, tol=1e-6 * np.abs(M).max()) <= 2 for M in dense.values())
            values.append(np.mean([_entropy(M) for M in dense.values()]))
            row = per_seed[(seed, label)]
            assert row[2] == "2" and float(row[5]) == pytest.approx(values[-1], abs=6e-4)
        summary = {r[0]: r for r in _table_rows(text, "role") if r[0] == label}
        # the first "| role |" table is the held-out loss; the entropy table follows it
        entropy_rows = [r for r in _table_rows(text.split("Entropy of ΔW")[1], "role") if r[0] == label][0]
        assert float(entropy_rows[1]) == pytest.approx(np.mean(values), abs=6e-4)
        assert float(entropy_rows[2]) == pytest.approx(np.std(values, ddof=1), abs=6e-4)
        assert summary  # the held-out table lists it too
    assert "Sanity check" in text and "FAILED" not in text
    assert "not separated at 2 seeds" in text or "separated at 2 seeds" in text
    # the In-Squeeze run recorded its schedule: 4 → 2 over steps 1..3
    record = json.loads((seeds / "seed-0" / "finetunes" / "in-squeeze-r4-r2" / "finetune_config.json").read_text())
    assert record["in_squeeze"]["steps"] == [1, 3] and record["in_squeeze"]["ranks"][-1] == [3, 2]
