"""Bad input: each case raises the right LabError subclass with one line naming the file (and
tensor). Inputs are real saved artifacts, damaged the way files get damaged."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import builders
from lab.checkpoints import discover, iter_deltas
from lab.errors import FormatError, InputError, LabError, MatchError, NonFiniteError, ShapeError


class NeedsCode:  # a class reference in a pickle: weights_only loading must refuse it
    def __init__(self):
        self.w = torch.ones(2, 2)


def _raises(exc, fn, *names):
    """Run fn, expect exc; its message is one line containing every name."""
    with pytest.raises(exc) as info:
        result = fn()
        if hasattr(result, "__next__"):
            list(result)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, LabError)
    for name in names:
        assert str(name) in message, (name, message)
    return message


@pytest.fixture()
def adapter(tmp_path, llama_lora):
    path = tmp_path / "adapter"
    shutil.copytree(llama_lora[0], path)
    return path


@pytest.fixture(scope="module")
def llama_ft(tmp_path_factory):
    return builders.save(builders.perturb(builders.tiny_llama(seed=0), seed=7), tmp_path_factory.mktemp("ft") / "ft")


def test_missing_path(tmp_path):
    _raises(InputError, lambda: discover(tmp_path / "nope"), tmp_path / "nope")


def test_empty_folder(tmp_path):
    _raises(InputError, lambda: discover(tmp_path), tmp_path, "empty")


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "README.md").write_text("no weights here")
    _raises(InputError, lambda: discover(tmp_path), tmp_path, "no weights")


def test_truncated_safetensors(tmp_path, llama_ft):
    data = (llama_ft / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    _raises(FormatError, lambda: discover(tmp_path), tmp_path / "model.safetensors", "truncated")


def test_corrupt_header(tmp_path, llama_ft):
    data = bytearray((llama_ft / "model.safetensors").read_bytes())
    data[8:40] = b"\x00garbage, not the JSON header\xff\xfe"
    (tmp_path / "model.safetensors").write_bytes(bytes(data))
    _raises(FormatError, lambda: discover(tmp_path), tmp_path / "model.safetensors", "corrupt")


def test_missing_adapter_config(adapter):
    (adapter / "adapter_config.json").unlink()
    _raises(InputError, lambda: discover(adapter), adapter, "adapter_config.json")


@pytest.mark.parametrize("edit", ["bad json", "r missing", "r zero"])
def test_invalid_adapter_config(adapter, edit):
    config_path = adapter / "adapter_config.json"
    config = json.loads(config_path.read_text())
    if edit == "bad json":
        config_path.write_text(config_path.read_text()[:-20])
    else:
        if edit == "r missing":
            del config["r"]
        else:
            config["r"] = 0
        config_path.write_text(json.dumps(config))
    _raises(FormatError, lambda: discover(adapter), config_path)


def test_adapter_shapes_disagree_with_r(adapter):
    config_path = adapter / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["rank_pattern"] = {"model.layers.1.self_attn.v_proj": 8}  # the file holds r = 4
    config_path.write_text(json.dumps(config))
    _raises(ShapeError, lambda: discover(adapter), adapter / "adapter_model.safetensors",
            "base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight", "r = 8")


def test_adapter_targets_module_the_base_lacks(tmp_path, adapter):
    """A one-layer base: layer 1's q_proj must not be paired with layer 0's by suffix."""
    state = load_file(builders.save(builders.tiny_llama(seed=0), tmp_path / "full") / "model.safetensors")
    save_file({k: v for k, v in state.items() if ".layers.1." not in k}, tmp_path / "one_layer.safetensors")
    (ckpt,) = discover(adapter)
    _raises(MatchError, lambda: iter_deltas(ckpt, tmp_path / "one_layer.safetensors"),
            tmp_path / "one_layer.safetensors", "model.layers.1.self_attn.q_proj")


def test_adapter_base_shape_mismatch(tmp_path, adapter, gpt2_base):
    state = load_file(builders.save(builders.tiny_llama(seed=0), tmp_path / "full") / "model.safetensors")
    state["model.layers.0.self_attn.v_proj.weight"] = torch.zeros(8, 32)
    save_file(state, tmp_path / "other.safetensors")
    _raises(ShapeError, lambda: iter_deltas(discover(adapter)[0], tmp_path / "other.safetensors"),
            tmp_path / "other.safetensors", "model.layers.0.self_attn.v_proj.weight")


def test_base_finetune_shape_mismatch(tmp_path, llama_base, llama_ft):
    state = load_file(llama_ft / "model.safetensors")
    state["model.layers.0.mlp.up_proj.weight"] = torch.zeros(40, 32)
    save_file(state, tmp_path / "model.safetensors")
    _raises(ShapeError, lambda: iter_deltas(discover(tmp_path)[0], llama_base),
            tmp_path / "model.safetensors", llama_base / "model.safetensors", "model.layers.0.mlp.up_proj.weight")


def test_finetune_sharing_nothing_with_base(llama_ft, gpt2_base):
    _raises(MatchError, lambda: iter_deltas(discover(llama_ft)[0], gpt2_base), llama_ft, gpt2_base)


def test_full_checkpoint_needs_base(llama_ft):
    _raises(InputError, lambda: iter_deltas(discover(llama_ft)[0]), llama_ft, "--base")


def test_nonfinite_weights_and_allow_nonfinite(tmp_path, llama_base, llama_ft):
    state = load_file(llama_ft / "model.safetensors")
    state["model.layers.1.self_attn.k_proj.weight"][3, 5] = float("nan")
    state["model.layers.1.self_attn.k_proj.weight"][0, 0] = float("inf")
    save_file(state, tmp_path / "model.safetensors")
    (ckpt,) = discover(tmp_path)
    _raises(NonFiniteError, lambda: iter_deltas(ckpt, llama_base), tmp_path / "model.safetensors",
            "model.layers.1.self_attn.k_proj.weight", "--allow-nonfinite")
    deltas = {d.module: d for d in iter_deltas(ckpt, llama_base, allow_nonfinite=True)}
    k = deltas["model.layers.1.self_attn.k_proj"].dense
    assert np.isnan(k[3, 5]) and np.isinf(k[0, 0]) and np.isfinite(np.delete(k.ravel(), [0, 3 * 32 + 5])).all()


def test_nonfinite_adapter_factor(adapter):
    weights = adapter / "adapter_model.safetensors"
    state = load_file(weights)
    state["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"][0, 0] = float("inf")
    save_file(state, weights)
    _raises(NonFiniteError, lambda: iter_deltas(discover(adapter)[0]), weights, "layers.0.self_attn.q_proj.lora_B.weight")


def test_pickle_that_needs_code(tmp_path):
    torch.save({"model.layers.0.mlp.up_proj.weight": torch.ones(4, 4), "extra": NeedsCode()}, tmp_path / "pytorch_model.bin")
    _raises(FormatError, lambda: discover(tmp_path), tmp_path / "pytorch_model.bin", "needs code")


def test_shard_named_in_index_but_missing(tmp_path):
    ft = builders.save(builders.tiny_llama(seed=0), tmp_path / "ft", max_shard_size="20KB")
    missing = ft / "model-00002-of-00005.safetensors"
    missing.unlink()
    _raises(FormatError, lambda: discover(ft), ft / "model.safetensors.index.json", missing.name, "missing")


def test_base_that_is_an_adapter_or_missing(llama_ft, adapter, tmp_path):
    (ckpt,) = discover(llama_ft)
    _raises(InputError, lambda: iter_deltas(ckpt, adapter), adapter, "--base")
    _raises(InputError, lambda: iter_deltas(ckpt, tmp_path / "nope"), tmp_path / "nope", "--base")


def test_invalid_modules_regex(llama_ft, llama_base):
    _raises(InputError, lambda: iter_deltas(discover(llama_ft)[0], llama_base, modules="q_proj("), "--modules")
