"""MPS Adaptation fine-tunes (arXiv 2601.06788): the module's ΔW is B·A_MPS built from the saved
cores, the forward pass applies exactly that update, training moves B then the cores, the split of
d_in follows the entanglement probe's chain, and the same seed gives the same bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from finetune_helpers import FIXED, run
from lab.errors import InputError
from lab.finetune.mps import MPS_CONFIG, MPS_WEIGHTS, MPSLinear, load_mps, mps_modules
from lab.finetune.mps_layout import choose_split, trainable_params
from lab.finetune.models import load_model, resolve_base
from lab.finetune.train import CONFIG_FILE, LOSS_FILE
from lab.kernels.tensorize import prime_factors


def _numpy_delta(raw: dict, name: str, alpha: float, r: int) -> np.ndarray:
    """(α/r)·B·A_MPS from the file's arrays, contracted index by index with numpy's einsum."""
    B, C1, C2 = (raw[f"{name}.mps_{p}"].astype(np.float64) for p in ("B", "C1", "C2"))
    A = np.einsum("aic,cj->aij", C1, C2).reshape(C1.shape[0], -1)  # column i1·d2 + i2
    return (alpha / r) * B @ A


@pytest.mark.parametrize("fixture", ["minilm_mps", "llama_mps"])
def test_saved_cores_give_the_module_update(fixture, request):
    out: Path = request.getfixturevalue(fixture)
    record = json.loads((out / CONFIG_FILE).read_text())
    ckpt = out / "checkpoint-3"
    config = json.loads((ckpt / MPS_CONFIG).read_text())
    assert (config["method"], config["r"], config["chi"]) == ("mps", 4, record["options"]["chi"])
    assert config["modules"] == record["trained_modules"]
    raw = load_file(ckpt / MPS_WEIGHTS)
    assert set(raw) == {f"{m}.mps_{p}" for m in config["modules"] for p in ("B", "C1", "C2")}
    assert all(v.dtype == np.float32 for v in raw.values())

    base = resolve_base(record["base_model"])
    model, _ = load_model(base)
    load_mps(model, ckpt)
    modules = mps_modules(model)
    assert sorted(modules) == sorted(config["modules"])
    for name, module in modules.items():
        assert module.d1 * module.d2 == module.base_layer.in_features
        expected = _numpy_delta(raw, name, config["alpha"], config["r"])
        assert np.abs(expected).max() > 0  # trained: B moved away from zero
        got = module.delta_weight().detach().double().numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
        # the forward pass adds exactly x·ΔWᵀ to the frozen layer's output
        x = torch.randn(5, module.base_layer.in_features, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            y = module(x) - module.base_layer(x)
        np.testing.assert_allclose(y.double().numpy(), x.double().numpy() @ expected.T, rtol=1e-4, atol=1e-6)
        assert module.trainable_parameters() == trainable_params(module.base_layer.out_features, module.d1, module.d2, module.chi, module.r)


def test_cores_learn_after_the_first_step(minilm_mps):
    """B starts at zero (ΔW = 0) so step 1 moves B only; by step 3 the cores have moved too."""
    record = json.loads((minilm_mps / CONFIG_FILE).read_text())
    torch.manual_seed(record["options"]["seed"])
    model, _ = load_model(resolve_base(record["base_model"]))
    from lab.finetune.mps import wrap_mps

    wrap_mps(model, record["options"]["target_modules"] or ["query", "value"], 4, 3, 8.0)
    init = {n: {p: getattr(m, p).detach().numpy().copy() for p in ("mps_B", "mps_C1", "mps_C2")} for n, m in mps_modules(model).items()}
    assert all(not v["mps_B"].any() for v in init.values())
    saved = load_file(minilm_mps / "checkpoint-3" / MPS_WEIGHTS)
    name = next(iter(init))
    assert not np.array_equal(saved[f"{name}.mps_C1"], init[name]["mps_C1"])
    assert not np.array_equal(saved[f"{name}.mps_C2"], init[name]["mps_C2"])
    losses = [json.loads(line)["loss"] for line in (minilm_mps / LOSS_FILE).read_text().splitlines()]
    assert losses[-1] < losses[0]  # the fixed batch (the whole file) is fitted


def test_same_seed_same_bytes(tmp_path, texts_file, minilm_mps):
    again = run(tmp_path / "again", model="minilm", method="mps", texts=str(texts_file), lr=2e-3, **{**FIXED, "steps": 3}, chi=3)
    for step in (1, 2, 3):
        name = f"checkpoint-{step}/{MPS_WEIGHTS}"
        assert (again / name).read_bytes() == (minilm_mps / name).read_bytes()
    other = run(tmp_path / "other", model="minilm", method="mps", texts=str(texts_file), lr=2e-3, **{**FIXED, "steps": 1}, chi=3, seed=1)
    assert (other / f"checkpoint-1/{MPS_WEIGHTS}").read_bytes() != (minilm_mps / f"checkpoint-1/{MPS_WEIGHTS}").read_bytes()


@pytest.mark.parametrize("d_in", [384, 4096, 32, 12, 6, 1000, 2 * 383])
def test_split_is_the_most_balanced_suffix_of_the_column_sites(d_in):
    d1, d2 = choose_split(d_in)
    assert d1 * d2 == d_in and d1 >= 2 and d2 >= 2
    factors = prime_factors(d_in)
    suffixes = [int(np.prod(factors[-j:])) for j in range(1, len(factors))]
    assert d2 in suffixes  # d2 is the product of the chain's last column sites
    assert abs(np.log(d1 / d2)) == min(abs(np.log(d_in / s / s)) for s in suffixes)


def test_known_splits():
    assert choose_split(4096) == (64, 64)  # the paper's d1 = d2 = 64
    assert choose_split(384) == (16, 24)
    assert trainable_params(4096, 64, 64, 32, 256) == 1_574_912  # the paper's count (LoRA: 2,097,152)


@pytest.mark.parametrize("d_in, d1", [(383, None), (1, None), (384, 7), (384, 384)])
def test_no_usable_split_is_an_input_error(d_in, d1):
    with pytest.raises(InputError, match=str(d_in)):
        choose_split(d_in, d1, where="model")


def test_cli_error_is_one_line(tmp_path, texts_file):
    done = subprocess.run([str(Path(sys.executable).with_name("lab")), "finetune", "--out", str(tmp_path / "x"), "--method", "mps",
                           "--d1", "7", "--texts", str(texts_file), "--steps", "1"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--d1 7" in lines[0] and "384" in lines[0] and "query" in lines[0]


def test_mps_linear_rejects_a_wrong_split():
    with pytest.raises(ValueError):
        MPSLinear(torch.nn.Linear(12, 5), r=2, chi=2, d1=5, d2=2, alpha=1.0)


def test_cli_trains_what_the_api_trains(tmp_path, texts_file, minilm_mps):
    """``lab finetune --method mps`` through the console script: the same options as the ``minilm_mps``
    fixture (made through the API) give the same cores, and the run reads back as an MPS adapter."""
    lab = str(Path(sys.executable).with_name("lab"))
    out = tmp_path / "cli-mps"
    done = subprocess.run([lab, "finetune", "--out", str(out), "--model", "minilm", "--method", "mps", "--texts", str(texts_file),
                           "--r", "4", "--alpha", "8", "--chi", "3", "--steps", "3", "--save-every", "1", "--batch-size",
                           str(FIXED["batch_size"]), "--max-length", "24", "--lr", "2e-3"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for step in (1, 2, 3):
        got, expected = load_file(out / f"checkpoint-{step}" / MPS_WEIGHTS), load_file(minilm_mps / f"checkpoint-{step}" / MPS_WEIGHTS)
        assert got.keys() == expected.keys()
        for key in expected:
            np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-7, err_msg=key)
    record = json.loads((out / CONFIG_FILE).read_text())
    assert (record["options"]["method"], record["options"]["chi"]) == ("mps", 3)
