"""Full fine-tunes: W_ft − W_base per shared 2-D weight, equal to the difference torch computes
from the models' own state dicts, for every file layout transformers (and people) write."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import builders
from lab.checkpoints import discover, iter_deltas


def _two_d(model) -> dict[str, np.ndarray]:
    """The model's 2-D floating weights as float64, by key (the independent side); a tied weight
    (GPT-2's lm_head is wte) is saved once by save_pretrained, so it counts once here too."""
    out, seen = {}, set()
    for k, v in model.state_dict().items():
        if v.ndim == 2 and v.is_floating_point() and v.data_ptr() not in seen:
            seen.add(v.data_ptr())
            out[k] = v.detach().to(torch.float64).numpy()
    return out


def _expected(base_model, ft_model, conv1d=()) -> dict[str, np.ndarray]:
    """W_ft − W_base in (out, in) layout; GPT-2's c_attn split into rows q, k, v."""
    wb, wf = _two_d(base_model), _two_d(ft_model)
    out = {}
    for key in wb.keys() & wf.keys():
        delta = wf[key] - wb[key]
        module = key.removesuffix(".weight")
        if any(module.endswith(c) for c in conv1d):
            delta = delta.T
        if module.endswith("attn.c_attn"):
            n = delta.shape[0] // 3
            out.update({f"{module}.{p}": delta[i * n : (i + 1) * n] for i, p in enumerate("qkv")})
        else:
            out[module] = delta
    return out


def _check(deltas, expected, exact: bool = True):
    got = {d.module: d for d in deltas}
    assert sorted(got) == sorted(expected)
    for module, want in expected.items():
        d = got[module]
        assert d.kind == "full" and not d.is_factored and d.dense.dtype == np.float64
        if exact:  # the same float64 subtraction of the same upcast values
            assert np.array_equal(d.dense, want), module
        else:
            assert np.linalg.norm(d.dense - want) <= 1e-12 * max(np.linalg.norm(want), 1e-30), module
    return got


@pytest.fixture(scope="module")
def llama_models():
    return builders.tiny_llama(seed=0), builders.perturb(builders.tiny_llama(seed=0), seed=5)


def test_sharded_safetensors_finetune(tmp_path, llama_base, llama_models):
    base_model, ft_model = llama_models
    ft = builders.save(ft_model, tmp_path / "ft", max_shard_size="20KB")
    assert len(list(ft.glob("model-*-of-*.safetensors"))) > 1
    (ckpt,) = discover(ft)
    assert ckpt.format == "full"
    assert {p.name for p in ckpt.files} >= {"model.safetensors.index.json", "config.json"} | {p.name for p in ft.glob("model-*.safetensors")}
    got = _check(list(iter_deltas(ckpt, llama_base)), _expected(base_model, ft_model))
    d = got["model.layers.1.mlp.down_proj"]
    assert (d.layer, d.role, d.shape) == (1, "down", (32, 48))
    assert np.array_equal(d.base, _two_d(base_model)["model.layers.1.mlp.down_proj.weight"])


def test_bf16_checkpoints_are_upcast_before_subtracting(tmp_path):
    base_model = builders.tiny_llama(seed=0, dtype=torch.bfloat16)
    ft_model = builders.perturb(builders.tiny_llama(seed=0, dtype=torch.bfloat16), seed=3)
    base, ft = builders.save(base_model, tmp_path / "base"), builders.save(ft_model, tmp_path / "ft")
    got = _check(list(iter_deltas(discover(ft)[0], base)), _expected(base_model, ft_model))
    # subtracting in bf16 would round the update: the upcast difference must differ from it
    wb, wf = base_model.state_dict(), ft_model.state_dict()
    rounded = {k.removesuffix(".weight"): (wf[k] - wb[k]).double().numpy() for k in wb if wb[k].ndim == 2}
    assert any(not np.array_equal(got[m].dense, rounded[m]) for m in got)


def test_pytorch_model_bin_and_bare_safetensors_file(tmp_path, llama_base, llama_models):
    base_model, ft_model = llama_models
    folder = tmp_path / "bin"
    folder.mkdir()
    torch.save(ft_model.state_dict(), folder / "pytorch_model.bin")
    _check(list(iter_deltas(discover(folder)[0], llama_base)), _expected(base_model, ft_model))
    bare = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in ft_model.state_dict().items()}, bare)
    (ckpt,) = discover(bare)
    assert (ckpt.name, ckpt.path, ckpt.format) == ("weights.safetensors", bare, "full")
    _check(list(iter_deltas(ckpt, llama_base / "model.safetensors")), _expected(base_model, ft_model))


def test_sharded_pytorch_bin_with_index(tmp_path, llama_base, llama_models):
    import json

    base_model, ft_model = llama_models
    folder = tmp_path / "bins"
    folder.mkdir()
    state = ft_model.state_dict()
    keys = sorted(state)
    halves = {"pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2], "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2 :]}
    for name, part in halves.items():
        torch.save({k: state[k] for k in part}, folder / name)
    weight_map = {k: name for name, part in halves.items() for k in part}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    _check(list(iter_deltas(discover(folder)[0], llama_base)), _expected(base_model, ft_model))


def test_gpt2_conv1d_transposed_and_c_attn_split(tmp_path, gpt2_base):
    base_model, ft_model = builders.tiny_gpt2(seed=0), builders.perturb(builders.tiny_gpt2(seed=0), seed=4)
    ft = builders.save(ft_model, tmp_path / "ft")
    conv1d = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    got = _check(list(iter_deltas(discover(ft)[0], gpt2_base)), _expected(base_model, ft_model, conv1d))
    assert (got["transformer.h.0.mlp.c_fc"].shape, got["transformer.h.0.mlp.c_fc"].role) == ((128, 32), "up")
    assert got["transformer.wte"].shape == (64, 32) and got["transformer.wte"].role == "embed"
    assert [got[f"transformer.h.1.attn.c_attn.{p}"].role for p in "qkv"] == ["q", "k", "v"]


def test_bert_base_saved_under_another_head_prefix(tmp_path, bert_base):
    """A base whose keys carry a 'bert.' prefix (saved from a head class) still pairs by suffix."""
    base_model, ft_model = builders.tiny_bert(seed=0), builders.perturb(builders.tiny_bert(seed=0), seed=6)
    ft = builders.save(ft_model, tmp_path / "ft")
    prefixed = tmp_path / "prefixed.safetensors"
    save_file({f"bert.{k}": v.contiguous() for k, v in base_model.state_dict().items()}, prefixed)
    got = _check(list(iter_deltas(discover(ft)[0], prefixed)), _expected(base_model, ft_model))
    assert got["encoder.layer.1.attention.output.dense"].role == "o"
    _check(list(iter_deltas(discover(ft)[0], bert_base)), _expected(base_model, ft_model))


def test_modules_regex_and_tensors_on_one_side_only(tmp_path, llama_base, llama_models):
    base_model, ft_model = llama_models
    state = {k: v.contiguous() for k, v in ft_model.state_dict().items() if k != "lm_head.weight"}
    state["extra.adapter_like.weight"] = torch.ones(4, 4)  # only in the fine-tune: skipped
    save_file(state, tmp_path / "model.safetensors")
    deltas = list(iter_deltas(discover(tmp_path)[0], llama_base, modules=r"layers\.0\..*(q|k)_proj"))
    assert [d.module for d in deltas] == ["model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.q_proj"]
    every = {d.module for d in iter_deltas(discover(tmp_path)[0], llama_base)}
    assert "lm_head" not in every and "extra.adapter_like" not in every and len(every) == 15
