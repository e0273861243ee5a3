"""lab squeeze (LoRA-Squeeze): the kept update equals numpy's truncated SVD of the dense update,
the written adapter loads in PEFT with exactly that update, energy ranks keep at least the energy
asked for, a full fine-tune's randomized SVD sits at the exact truncation's error, and user errors
are one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import load_file

import builders
from lab.errors import InputError
from lab.squeeze.api import squeeze


def _dense_lora(folder: Path) -> dict[str, np.ndarray]:
    """s·B·A of every module of a PEFT adapter, from its files with PEFT's own scale rule."""
    config = json.loads((folder / "adapter_config.json").read_text())
    raw = load_file(folder / "adapter_model.safetensors")
    out = {}
    for key in raw:
        if ".lora_A." not in key:
            continue
        module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
        leaf = module.rsplit(".", 1)[-1]
        r = config["rank_pattern"].get(leaf, config["r"])
        alpha = config["alpha_pattern"].get(leaf, config["lora_alpha"])
        s = alpha / (np.sqrt(r) if config.get("use_rslora") else r)
        out[module] = s * raw[key.replace("lora_A", "lora_B")].astype(np.float64) @ raw[key].astype(np.float64)
    return out


def _dense_mps(folder: Path) -> dict[str, np.ndarray]:
    config = json.loads((folder / "mps_adapter_config.json").read_text())
    raw = load_file(folder / "mps_adapter_model.safetensors")
    out = {}
    for m in config["modules"]:
        C1, C2 = raw[f"{m}.mps_C1"].astype(np.float64), raw[f"{m}.mps_C2"].astype(np.float64)
        A = np.einsum("aic,cj->aij", C1, C2).reshape(C1.shape[0], -1)
        out[m] = config["alpha"] / config["r"] * raw[f"{m}.mps_B"].astype(np.float64) @ A
    return out


def _truncated(M: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    U, s, Vt = np.linalg.svd(M, full_matrices=False)
    return (U[:, :k] * s[:k]) @ Vt[:k], s


def _peft_deltas(base: Path, adapter: Path) -> dict[str, np.ndarray]:
    """ΔW of every module as PEFT computes it after PeftModel.from_pretrained (float64)."""
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    model = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base, dtype=torch.float64), adapter)
    return {n.removeprefix("base_model.model."): m.get_delta_weight("default").detach().double().numpy()
            for n, m in model.named_modules()
            if "default" in getattr(m, "lora_A", {}) or "default" in getattr(m, "lora_embedding_A", {})}


@pytest.mark.parametrize("name, dense, tol", [("f64", _dense_lora, 1e-10), ("f32", _dense_lora, 1e-6), ("mps", _dense_mps, 1e-6)])
def test_rank_k_equals_numpys_truncated_svd_and_loads_in_peft(tmp_path, adapters, llama_base, name, dense, tol):
    k = 3
    done = squeeze(adapters[name], tmp_path / "out", rank=k, results=tmp_path / "res")
    exact = dense(adapters[name])
    loaded = _peft_deltas(llama_base, tmp_path / "out")
    assert sorted(loaded) == sorted(exact)
    table = pd.read_parquet(done.table).set_index("module")
    for module, M in exact.items():
        best, s = _truncated(M, k)
        np.testing.assert_allclose(loaded[module], best, atol=tol * np.abs(best).max(), rtol=0)
        row = table.loc[module]
        assert row.k == k and row.method == "exact" and row.source_kind == ("mps" if name == "mps" else "lora")
        assert row.rel_fro_error == pytest.approx(np.linalg.norm(M - best) / np.linalg.norm(M), rel=1e-8, abs=1e-12)
        assert row.optimal_rel_fro_error == pytest.approx(np.sqrt((s[k:] ** 2).sum()) / np.linalg.norm(s), rel=1e-8, abs=1e-12)
        assert row.kept_energy == pytest.approx((s[:k] ** 2).sum() / (s ** 2).sum(), rel=1e-10)
        assert row.params_out == k * sum(M.shape)


@pytest.mark.parametrize("energy", [0.5, 0.9, 0.99])
def test_energy_ranks_keep_at_least_the_energy(tmp_path, adapters, llama_base, energy):
    done = squeeze(adapters["f64"], tmp_path / "out", energy=energy, results=tmp_path / "res")
    exact = _dense_lora(adapters["f64"])
    loaded = _peft_deltas(llama_base, tmp_path / "out")
    table = pd.read_parquet(done.table).set_index("module")
    ks = set()
    for module, M in exact.items():
        s = np.linalg.svd(M, compute_uv=False)
        share = np.cumsum(s ** 2) / (s ** 2).sum()
        k = int(table.loc[module].k)
        ks.add(k)
        assert share[k - 1] >= energy and (k == 1 or share[k - 2] < energy)  # enough, and the smallest such k
        kept = loaded[module]
        assert np.linalg.norm(kept) ** 2 >= energy * np.linalg.norm(M) ** 2 * (1 - 1e-12)
        np.testing.assert_allclose(kept, _truncated(M, k)[0], atol=1e-10 * np.abs(M).max(), rtol=0)
    assert len(ks) > 1 or energy != 0.9  # the per-module ranks differ: rank_pattern is exercised


def test_full_finetune_randomized_svd_matches_the_exact_truncation(tmp_path, full_finetune, llama_base):
    path, deltas = full_finetune
    k = 4
    done = squeeze(path, tmp_path / "out", rank=k, base=llama_base, seed=3, results=tmp_path / "res")
    table = pd.read_parquet(done.table).set_index("module")
    assert sorted(table.index) == sorted(deltas)  # frozen modules (ΔW = 0) are left out
    loaded = _peft_deltas(llama_base, tmp_path / "out")
    for module, M in deltas.items():
        row = table.loc[module]
        assert row.method == "randomized" and row.source_kind == "full"
        best, s = _truncated(M, k)
        # the update saved in float32 minus the base: compare with the exact truncation of what was saved
        assert row.optimal_rel_fro_error == pytest.approx(np.sqrt((s[k:] ** 2).sum()) / np.linalg.norm(s), rel=1e-3)
        assert row.optimal_rel_fro_error * (1 - 1e-12) <= row.rel_fro_error <= row.optimal_rel_fro_error * 1.01
        np.testing.assert_allclose(loaded[module], best, atol=2e-3 * np.abs(best).max(), rtol=0)
    again = squeeze(path, tmp_path / "again", rank=k, base=llama_base, seed=3, results=tmp_path / "res")
    assert (tmp_path / "again/adapter_model.safetensors").read_bytes() == (tmp_path / "out/adapter_model.safetensors").read_bytes()
    assert again.rows[0]["rel_fro_error"] == done.rows[0]["rel_fro_error"]


def test_refusals_before_anything_is_written(tmp_path, adapters, full_finetune):
    with pytest.raises(InputError, match="DoRA"):
        squeeze(adapters["dora"], tmp_path / "a", rank=2, results=tmp_path / "res")
    with pytest.raises(InputError, match="--rank 9 must be between 1 and the update's rank bound 8"):
        squeeze(adapters["f32"], tmp_path / "b", rank=9, results=tmp_path / "res")
    with pytest.raises(InputError, match="needs --base"):
        squeeze(full_finetune[0], tmp_path / "c", rank=2, results=tmp_path / "res")
    # Cont-Squeeze trains at the source's one scale α/r: f64's modules have three (α/√r, alpha_pattern, rank_pattern)
    with pytest.raises(InputError, match="several scales"):
        squeeze(adapters["f64"], tmp_path / "d", rank=2, steps=1, results=tmp_path / "res")
    assert not any((tmp_path / n).exists() for n in "abcd") and not (tmp_path / "res").exists()


@pytest.mark.parametrize("args, needle", [
    (["--rank", "2", "--energy", "0.9"], "exactly one of --rank"),
    (["--energy", "1.5"], "--energy 1.5"),
    (["--rank", "0"], "--rank 0"),
    (["--rank", "99"], "--rank 99"),
])
def test_cli_errors_are_one_line(tmp_path, adapters, args, needle):
    lab = str(Path(sys.executable).with_name("lab"))
    done = subprocess.run([lab, "squeeze", str(adapters["f32"]), "--out", str(tmp_path / "o"), "--results", str(tmp_path / "r"), *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr


def test_cli_writes_adapter_and_table(tmp_path, adapters):
    lab = str(Path(sys.executable).with_name("lab"))
    done = subprocess.run([lab, "squeeze", str(adapters["mps"]), "--rank", "2", "--out", str(tmp_path / "o"), "--results", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    table = pd.read_parquet(tmp_path / "r" / "squeezes" / "squeeze.parquet")
    assert (table.k == 2).all() and (table.checkpoint == "o").all() and len(table) == 4


def test_embedding_adapter_squeezes_in_the_table_layout(tmp_path, llama_base):
    """PEFT's embedding update is (B·A)ᵀ of lora_embedding_B/A: the squeezed table update must be the
    truncated SVD of that, written back in PEFT's layout."""
    from squeeze_inputs import lora_adapter

    path = lora_adapter(tmp_path / "emb", 4, dtype=torch.float64, r=6, lora_alpha=12, target_modules=["embed_tokens"])
    raw = load_file(path / "adapter_model.safetensors")
    key = next(k for k in raw if "lora_embedding_A" in k)
    M = 2.0 * (raw[key.replace("_A", "_B")] @ raw[key]).T  # (num_embeddings, dim)
    squeeze(path, tmp_path / "out", rank=2, results=tmp_path / "res")
    loaded = _peft_deltas(llama_base, tmp_path / "out")
    (module,) = loaded
    best, _ = _truncated(M, 2)
    assert loaded[module].shape == best.shape
    np.testing.assert_allclose(loaded[module], best, atol=1e-10 * np.abs(best).max(), rtol=0)
