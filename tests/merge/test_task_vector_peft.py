"""lab merge's task-vector methods against PEFT's add_weighted_adapter (ties_svd, magnitude_prune_svd,
dare_linear_svd, dare_ties_svd, svd) on real small PEFT adapters, and where PEFT's merge is not the
exact one (rsLoRA inputs, DoRA inputs)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from typer.testing import CliRunner

import builders
from conftest import make_adapter
from lab.cli import app

LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # model order ≠ natural order


@pytest.fixture(scope="module")
def llama_pair(tmp_path_factory, llama_base):
    root = tmp_path_factory.mktemp("tv_llama")
    return [make_adapter(root / "x", 21, r=4, lora_alpha=8, target_modules=LLAMA_TARGETS),
            make_adapter(root / "y", 22, r=6, lora_alpha=3, target_modules=LLAMA_TARGETS)]


@pytest.fixture(scope="module")
def gpt2_pair(tmp_path_factory):
    """GPT-2 adapters on Conv1D (fan_in_fan_out) and the embedding: PEFT's delta layout is the transposed one."""
    root = tmp_path_factory.mktemp("tv_gpt2")
    base = builders.save(builders.tiny_gpt2(seed=0), root / "base")
    paths = []
    for seed in (1, 2):
        model = get_peft_model(builders.tiny_gpt2(seed=0), LoraConfig(r=3, lora_alpha=6, fan_in_fan_out=True,
                                                                        target_modules=["c_attn", "wte"]))
        builders.randomize_lora(model, seed=seed)
        model.save_pretrained(root / f"g{seed}")
        paths.append(root / f"g{seed}")
    return base, paths


def peft_merge(base_model, paths, weights, combination, seed=None, **kwargs):
    """PEFT's add_weighted_adapter; with ``seed``, torch's global generator is seeded as its merge loop starts
    (after the new adapter's random initialisation, which draws from it too)."""
    model = PeftModel.from_pretrained(base_model, paths[0], adapter_name="a0")
    for i, p in enumerate(paths[1:], 1):
        model.load_adapter(p, adapter_name=f"a{i}")
    inner = model.base_model
    inject = inner.inject_adapter

    def inject_then_seed(*args, **kw):
        out = inject(*args, **kw)
        if seed is not None:
            torch.manual_seed(seed)
        return out

    inner.inject_adapter = inject_then_seed
    inner.add_weighted_adapter([f"a{i}" for i in range(len(paths))], weights, "m", combination_type=combination, **kwargs)
    return deltas(model, "m")


def deltas(model, name):
    pm = copy.deepcopy(model).double()
    return {m: layer.get_delta_weight(name).detach().numpy() for m, layer in pm.base_model.model.named_modules()
            if isinstance(layer, LoraLayer) and (name in layer.lora_A or name in layer.lora_embedding_A)}


def lab_merge(tmp_path, paths, name, *args):
    out = tmp_path / name
    result = CliRunner().invoke(app, ["merge", *map(str, paths), "--out", str(out), "--results", str(tmp_path / "results"), *args])
    assert result.exit_code == 0, result.output
    return out


def lab_deltas(base_model, out):
    return deltas(PeftModel.from_pretrained(base_model, out, adapter_name="m"), "m")


def rel(x, y):
    return np.linalg.norm(x - y) / np.linalg.norm(y)


@pytest.mark.parametrize("method", ["ties", "magnitude_prune", "dare_linear", "dare_ties", "task_arithmetic"])
def test_llama_equals_peft_svd_variants(tmp_path, llama_base, llama_pair, method):
    w, k, d, seed = [0.6, 0.9], 5, 0.3, 7
    combination = "svd" if method == "task_arithmetic" else f"{method}_svd"
    extra = {} if method == "task_arithmetic" else {"density": d}
    want = peft_merge(builders.tiny_llama(seed=0), llama_pair, w, combination, seed=seed, svd_rank=k, **extra)
    args = ["--method", method, "--weights", "0.6,0.9", "--rank", str(k), "--seed", str(seed),
            "--base", str(llama_base)]  # the base gives the model's module order, in which PEFT draws DARE's masks
    out = lab_merge(tmp_path, llama_pair, method, *args, *(["--density", str(d)] if extra else []))
    got = lab_deltas(builders.tiny_llama(seed=0), out)
    assert set(got) == set(want) and len(got) == 2 * len(LLAMA_TARGETS)
    for m in want:
        assert rel(got[m], want[m]) < 1e-5, m  # PEFT merges in float32; the masks and trims are the same entries


@pytest.mark.parametrize("method", ["ties", "dare_ties"])
def test_gpt2_conv1d_and_embedding_equal_peft(tmp_path, gpt2_pair, method):
    base, paths = gpt2_pair
    want = peft_merge(builders.tiny_gpt2(seed=0), paths, [1.0, 0.5], f"{method}_svd", seed=3, svd_rank=4, density=0.5)
    out = lab_merge(tmp_path, paths, method, "--method", method, "--weights", "1,0.5", "--rank", "4", "--density", "0.5",
                    "--seed", "3", "--base", str(base))
    got = lab_deltas(builders.tiny_gpt2(seed=0), out)
    assert set(got) == set(want)
    for m in want:
        assert rel(got[m], want[m]) < 1e-5, m


def test_merge_table_splits_the_error_into_method_and_rank(tmp_path, llama_base, llama_pair):
    """rel_fro_error against T; method_rel_fro_error = ‖M_full − T‖/‖T‖ and truncation = ‖M_full − M_k‖/‖T‖,
    each recomputed here with numpy from the inputs' PEFT deltas and numpy's SVD."""
    out = lab_merge(tmp_path, llama_pair, "tt", "--method", "ties", "--rank", "3", "--density", "0.5")
    t = pd.read_parquet(tmp_path / "results" / "merges" / "merge.parquet").set_index("module")
    inputs = [deltas(PeftModel.from_pretrained(builders.tiny_llama(seed=0), p, adapter_name="a"), "a") for p in llama_pair]
    got = lab_deltas(builders.tiny_llama(seed=0), out)
    for m in got:
        taus = [d[m] for d in inputs]
        T = 0.5 * taus[0] + 0.5 * taus[1]
        trimmed = []
        for x in taus:
            th = np.sort(np.abs(x).ravel())[::-1][int(0.5 * x.size) - 1]
            trimmed.append(np.where(np.abs(x) >= th, x, 0))
        sigma = np.where(trimmed[0] + trimmed[1] >= 0, 1, -1)
        agree = [np.sign(x) == sigma for x in trimmed]
        M = (0.5 * trimmed[0] * agree[0] + 0.5 * trimmed[1] * agree[1]) / np.maximum(agree[0] + agree[1].astype(int), 1)
        s = np.linalg.svd(M, compute_uv=False)
        row = t.loc[m]
        assert row.method_rel_fro_error == pytest.approx(rel(M, T), rel=1e-5)
        assert row.truncation_rel_fro_error == pytest.approx(np.sqrt((s[3:] ** 2).sum()) / np.linalg.norm(T), rel=1e-5)
        assert row.rel_fro_error == pytest.approx(rel(got[m], T), rel=1e-4)
        assert row.density == 0.5 and row.k == 3 and row.method == "ties" and pd.isna(row.seed)


def test_peft_svd_merge_of_rslora_inputs_is_sqrt_k_too_large(tmp_path, llama_base, adapters):
    """PEFT's add_weighted_adapter copies the first input's config (use_rslora) onto the merged adapter with
    lora_alpha = r = k, so its scale is k/√k = √k, not 1: its update is √k times the truncated sum.
    lab writes scale 1 and equals numpy's best rank-k of T = Σ w_j·ΔW_j (ΔW_j from PEFT's own get_delta_weight)."""
    paths = [adapters["b"], adapters["a"]]  # b: rsLoRA, first
    k = 3
    peft = peft_merge(builders.tiny_llama(seed=0), paths, [0.5, 0.5], "svd", svd_rank=k)
    out = lab_merge(tmp_path, paths, "ta", "--method", "task_arithmetic", "--rank", str(k))
    got = lab_deltas(builders.tiny_llama(seed=0), out)
    inputs = [deltas(PeftModel.from_pretrained(builders.tiny_llama(seed=0), p, adapter_name="a"), "a") for p in paths]
    for m in got:
        T = 0.5 * inputs[0][m] + 0.5 * inputs[1][m]
        U, s, Vt = np.linalg.svd(T)
        exact = (U[:, :k] * s[:k]) @ Vt[:k]
        assert rel(got[m], exact) < 1e-6
        assert rel(peft[m], np.sqrt(k) * exact) < 1e-5  # PEFT: √k times the exact truncation
        assert rel(peft[m], exact) > 0.5


def test_peft_merge_of_dora_inputs_is_not_the_sum_of_their_updates_and_lab_refuses(tmp_path, llama_base):
    """PEFT's add_weighted_adapter merges DoRA adapters' get_delta_weight (s·B·A only: DoRA's magnitude m and
    norm are left out) into a new DoRA adapter whose magnitude is re-initialised from the base: the merged
    model's weights are not W + Σ w_j (W'_j − W), W'_j = m_j (W + s_j B_j A_j)/‖·‖ from PEFT's own
    merge_and_unload of each input. lab refuses DoRA inputs in one line (exit 2)."""
    paths = []
    for seed in (31, 32):
        model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(r=4, lora_alpha=8, use_dora=True, target_modules=["q_proj"]))
        builders.randomize_lora(model, seed=seed)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "magnitude" in n:
                    p.mul_(1.0 + 0.2 * torch.rand_like(p))
        model.save_pretrained(tmp_path / f"d{seed}")
        paths.append(tmp_path / f"d{seed}")
    W0 = builders.tiny_llama(seed=0).model.layers[0].self_attn.q_proj.weight.detach().double().numpy()
    Ws = [PeftModel.from_pretrained(builders.tiny_llama(seed=0), p).merge_and_unload().model.layers[0].self_attn.q_proj
          .weight.detach().double().numpy() for p in paths]
    exact = W0 + 0.5 * (Ws[0] - W0) + 0.5 * (Ws[1] - W0)
    model = PeftModel.from_pretrained(builders.tiny_llama(seed=0), paths[0], adapter_name="a0")
    model.load_adapter(paths[1], adapter_name="a1")
    model.add_weighted_adapter(["a0", "a1"], [0.5, 0.5], "m", combination_type="cat")
    model.set_adapter("m")
    merged = model.merge_and_unload().model.layers[0].self_attn.q_proj.weight.detach().double().numpy()
    assert rel(merged - W0, exact - W0) > 0.5  # not the mean of the DoRA updates (1.02 when written)
    result = CliRunner().invoke(app, ["merge", *map(str, paths), "--out", str(tmp_path / "out"), "--method", "ties",
                                      "--density", "0.5", "--results", str(tmp_path / "results")])
    assert result.exit_code == 2 and "DoRA" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
