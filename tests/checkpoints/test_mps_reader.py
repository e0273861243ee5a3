"""MPS Adaptation adapters read by lab.checkpoints: the factored delta (B and the rebuilt A_MPS)
equals the dense update computed from the file with numpy, the cores' shapes are checked against
the config, the deltas table counts every kind's trainable parameters, and χ bounds the entropy
at the cuts the cores' shapes say it governs (lab/finetune/mps_layout.py derives the bounds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

import builders
import lab
from lab.checkpoints import discover, iter_deltas
from lab.errors import FormatError, ShapeError
from lab.finetune.mps import MPS_CONFIG, MPS_WEIGHTS, mps_modules, save_mps, wrap_mps
from lab.finetune.mps_layout import cut_bounds
from lab.probes.entanglement import entanglement_profile


def _randomize(model, seed: int, std: float = 0.3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in mps_modules(model).values():
            for p in (m.mps_B, m.mps_C1, m.mps_C2):
                p.copy_(std * torch.randn(p.shape, generator=g))


def _mps_adapter(folder: Path, model, targets, r, chi, d1=None, seed=3) -> Path:
    torch.manual_seed(seed)
    wrap_mps(model, targets, r, chi, alpha=2.0 * r, d1=d1)
    _randomize(model, seed)
    save_mps(model, folder, base_path="unused", targets=targets)
    return folder


def _numpy_dense(folder: Path, module: str) -> np.ndarray:
    config = json.loads((folder / MPS_CONFIG).read_text())
    raw = load_file(folder / MPS_WEIGHTS)
    B, C1, C2 = (raw[f"{module}.mps_{p}"].astype(np.float64) for p in ("B", "C1", "C2"))
    r, d1, chi = C1.shape
    A = np.zeros((r, d1 * C2.shape[1]))
    for i1 in range(d1):  # column i1·d2 + i2, summed over the bond index by hand
        for i2 in range(C2.shape[1]):
            A[:, i1 * C2.shape[1] + i2] = sum(C1[:, i1, c] * C2[c, i2] for c in range(chi))
    return config["alpha"] / config["r"] * B @ A


@pytest.fixture(scope="module")
def llama_mps(tmp_path_factory, llama_base):
    return _mps_adapter(tmp_path_factory.mktemp("mps") / "adapter", builders.tiny_llama(seed=0), ["q_proj", "v_proj"], r=4, chi=2)


def test_factored_delta_equals_the_dense_update(llama_mps, llama_base):
    (ckpt,) = discover(llama_mps)
    assert ckpt.format == "mps"
    deltas = list(iter_deltas(ckpt, llama_base))
    config = json.loads((llama_mps / MPS_CONFIG).read_text())
    assert [d.module for d in deltas] == config["modules"]
    base = load_file(llama_base / "model.safetensors")
    for d in deltas:
        assert d.kind == "mps" and d.is_factored and d.rank_bound == 4
        dense = _numpy_dense(llama_mps, d.module)
        np.testing.assert_allclose(d.to_dense(), dense, rtol=1e-12, atol=1e-14)
        assert d.fro_norm() == pytest.approx(np.linalg.norm(dense), rel=1e-12)
        np.testing.assert_array_equal(d.base, base[f"{d.module}.weight"].astype(np.float64))
        rows, cols = d.shape
        assert d.params == rows * 4 + 4 * config["d1"] * 2 + 2 * config["d2"]


def test_deltas_table_counts_parameters_of_every_kind(tmp_path, llama_mps, llama_base, llama_lora):
    lora_path, _ = llama_lora
    full = builders.save(builders.perturb(builders.tiny_llama(seed=0)), tmp_path / "full")
    from peft import LoraConfig, get_peft_model

    dora_model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(r=3, lora_alpha=6, use_dora=True, target_modules=["k_proj"]))
    builders.randomize_lora(dora_model)
    dora_model.save_pretrained(tmp_path / "dora")
    emb_model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(r=3, lora_alpha=6, target_modules=["embed_tokens"]))
    builders.randomize_lora(emb_model)
    emb_model.save_pretrained(tmp_path / "emb")
    emb = lab.analyze(tmp_path / "emb", base=llama_base, out=tmp_path / "res", run="emb", probes=["deltas"], progress=False).table("deltas")
    assert len(emb) == 1 and emb.params.iloc[0] == 3 * (64 + 32)  # lora_embedding_A 3×64, lora_embedding_B 32×3
    for path, kind in ((llama_mps, "mps"), (lora_path, "lora"), (tmp_path / "dora", "dora"), (full, "full")):
        run = lab.analyze(path, base=llama_base, out=tmp_path / "res", run=kind, probes=["deltas"], progress=False)
        table = run.table("deltas")
        assert (table.kind == kind).all()
        for row in table.itertuples():
            expected = {"lora": 4 * (row.rows + row.cols), "dora": 3 * (row.rows + row.cols) + row.rows,
                        "full": row.rows * row.cols, "mps": row.rows * 4 + 4 * 4 * 2 + 2 * 8}[kind]
            assert row.params == expected, (kind, row.module)


@pytest.mark.parametrize("rows, d_in, r, chi, d1", [(12, 96, 8, 2, None), (8, 48, 6, 3, 4), (6, 64, 16, 2, 8)])
def test_chi_bounds_the_entropy_where_the_shapes_say(tmp_path, rows, d_in, r, chi, d1):
    model = torch.nn.Sequential(torch.nn.Linear(d_in, rows))
    folder = _mps_adapter(tmp_path / "a", model, ["0"], r=r, chi=chi, d1=d1, seed=rows)
    (delta,) = iter_deltas(discover(folder)[0])
    config = json.loads((folder / MPS_CONFIG).read_text())
    bounds = cut_bounds(rows, config["d1"], config["d2"], chi, r)
    profile = entanglement_profile(delta.matrix)
    assert np.all(profile.entropy <= bounds.entropy_bound + 1e-9)
    assert bounds.governed.any()  # χ is the binding bound somewhere
    # ... and at the d1|d2 cut (right block = the d2 sites) the bound is attained by generic cores:
    # the Schmidt rank there is exactly χ
    dense = delta.to_dense()
    k = int(np.flatnonzero(bounds.d_right == config["d2"])[0])
    assert bounds.governed[k] and bounds.rank_bound[k] == chi
    s = np.linalg.svd(dense.reshape(-1, config["d2"]), compute_uv=False)
    assert int((s > s[0] * 1e-10).sum()) == chi
    # a random dense matrix of the same shape violates the χ bound at that cut (the test can fail)
    rand = entanglement_profile(np.random.default_rng(0).standard_normal(dense.shape))
    assert rand.entropy[k] > bounds.entropy_bound[k]


def _corrupt(folder: Path, tmp_path: Path, edit) -> Path:
    bad = tmp_path / "bad"
    bad.mkdir()
    config = json.loads((folder / MPS_CONFIG).read_text())
    raw = load_file(folder / MPS_WEIGHTS)
    edit(config, raw)
    (bad / MPS_CONFIG).write_text(json.dumps(config))
    save_file(raw, str(bad / MPS_WEIGHTS))
    return bad


def test_config_and_shape_errors_name_the_file_and_tensor(tmp_path, llama_mps):
    key = "model.layers.0.self_attn.q_proj.mps_C1"
    bad = _corrupt(llama_mps, tmp_path, lambda c, raw: raw.__setitem__(key, raw[key][:, :, :1].copy()))
    with pytest.raises(ShapeError, match=rf"{MPS_WEIGHTS}: tensor '{key}' has shape \[4, 4, 1\]"):
        discover(bad)
    (tmp_path / "2").mkdir()
    bad2 = _corrupt(llama_mps, tmp_path / "2", lambda c, raw: c.__setitem__("chi", "two"))
    with pytest.raises(FormatError, match=rf"{MPS_CONFIG}: 'chi' must be a positive integer"):
        discover(bad2)
    done = subprocess.run([str(Path(sys.executable).with_name("lab")), "analyze", str(bad), "--out", str(tmp_path / "res")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0]
