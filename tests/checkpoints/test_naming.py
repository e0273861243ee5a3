"""Module names of real models normalised to (layer, role): the expected values come from the
models' own module objects (which submodule of which block a weight belongs to), not from names."""

from __future__ import annotations

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM
from transformers.pytorch_utils import Conv1D

import builders
from lab.checkpoints import module_name
from lab.checkpoints.naming import ROLES


def _weights(model) -> dict[str, torch.nn.Module]:
    """Every 2-D weight's module name -> the module object that owns it."""
    owners = {}
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.nn.Parameter) and weight.ndim == 2:
            owners[name] = module
    return owners


def _llama_like_expectations(model) -> dict[int, tuple[int | None, str]]:
    roles = {id(model.model.embed_tokens): (None, "embed"), id(model.lm_head): (None, "lm_head")}
    for i, block in enumerate(model.model.layers):
        a, m = block.self_attn, block.mlp
        for mod, role in ((a.q_proj, "q"), (a.k_proj, "k"), (a.v_proj, "v"), (a.o_proj, "o"), (m.gate_proj, "gate"), (m.up_proj, "up"), (m.down_proj, "down")):
            roles[id(mod)] = (i, role)
    return roles


def _tiny(config_cls, model_cls):
    torch.manual_seed(0)
    return model_cls(config_cls(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))


@pytest.mark.parametrize("make", [
    lambda: builders.tiny_llama(seed=0),
    lambda: _tiny(MistralConfig, MistralForCausalLM),
    lambda: _tiny(Qwen2Config, Qwen2ForCausalLM),
], ids=["llama", "mistral", "qwen2"])
def test_llama_family_names(make):
    model = make()
    expected = _llama_like_expectations(model)
    owners = _weights(model)
    assert len(owners) == len(expected)
    for name, module in owners.items():
        got = module_name(name, model.config.model_type)
        assert (got.layer, got.role) == expected[id(module)], name
        assert not got.conv1d and not got.split


def test_bert_names():
    model = builders.tiny_bert(seed=0)
    expected = {id(model.embeddings.word_embeddings): (None, "embed")}
    for i, block in enumerate(model.encoder.layer):
        att = block.attention
        for mod, role in ((att.self.query, "q"), (att.self.key, "k"), (att.self.value, "v"), (att.output.dense, "o"),
                          (block.intermediate.dense, "up"), (block.output.dense, "down")):
            expected[id(mod)] = (i, role)
    for name, module in _weights(model).items():
        got = module_name(name, "bert")
        # position/token-type embeddings and the pooler have no role of their own
        assert (got.layer, got.role) == expected.get(id(module), (None, "other")), name


@pytest.mark.parametrize("model_type", ["gpt2", None])
def test_gpt2_names_split_and_conv1d(model_type):
    model = builders.tiny_gpt2(seed=0)
    t = model.transformer
    expected = {id(t.wte): (None, "embed"), id(t.wpe): (None, "other"), id(model.lm_head): (None, "lm_head")}
    for i, block in enumerate(t.h):
        for mod, role in ((block.attn.c_attn, "qkv"), (block.attn.c_proj, "o"), (block.mlp.c_fc, "up"), (block.mlp.c_proj, "down")):
            expected[id(mod)] = (i, role)
    owners = _weights(model)
    owners["lm_head"] = model.lm_head  # tied to wte, so named_modules lists its weight once
    for name, module in owners.items():
        got = module_name(name, model_type)
        assert (got.layer, got.role) == expected[id(module)], name
        assert got.conv1d == isinstance(module, Conv1D), name
        assert got.split == (("q", "k", "v") if got.role == "qkv" else ())
    assert module_name("transformer.h.3.attn.c_attn").part_names() == [f"transformer.h.3.attn.c_attn.{p}" for p in "qkv"]


def test_declared_model_type_overrides_conv1d_guess():
    """Qwen-1 names its fused projection attn.c_attn but stores it as nn.Linear (out, in)."""
    got = module_name("transformer.h.0.attn.c_attn", "qwen")
    assert not got.conv1d and got.split == ("q", "k", "v")


def test_unknown_weights_are_other_and_roles_are_declared():
    got = module_name("model.layers.7.block_sparse_moe.gate")
    assert (got.layer, got.role) == (7, "other")
    assert module_name("vision.blocks.2.mlp.fc2").layer == 2
    from lab.checkpoints.naming import RULES

    assert {r.role for r in RULES if not r.split} <= set(ROLES)
