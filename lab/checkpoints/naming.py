"""Module names normalised to (layer, role), from one table of suffixes.

A module name is the tensor key without ``.weight`` and without PEFT's ``base_model.model.``,
e.g. ``model.layers.3.self_attn.q_proj``. Supporting a new architecture is one line in
``RULES``: the dotted suffix of its module names, the role, and whether the weight is a fused
projection to split by rows or a transformers ``Conv1D`` stored (in, out).

>>> module_name("model.layers.3.self_attn.q_proj")
ModuleName(module='model.layers.3.self_attn.q_proj', layer=3, role='q', split=(), conv1d=False)
>>> module_name("transformer.h.0.attn.c_attn").split
('q', 'k', 'v')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROLES = ("q", "k", "v", "o", "gate", "up", "down", "embed", "lm_head", "other",
         # image models (lab/checkpoints/diffusers_names.py): FLUX's fused qkv, convolutions, time embedding, proj_in/out
         "qkv", "conv", "time_embed", "proj_in", "proj_out")


@dataclass(frozen=True)
class Rule:
    """Modules whose name ends with ``suffix`` (whole dotted components) play ``role``."""

    suffix: str
    role: str
    split: tuple[str, ...] = ()  # a fused projection: its rows are these roles, in equal parts
    conv1d: bool = False  # transformers' Conv1D stores the weight (in, out)


RULES: tuple[Rule, ...] = (
    # LLaMA, Mistral, Qwen2, Gemma, OPT
    Rule("q_proj", "q"),
    Rule("k_proj", "k"),
    Rule("v_proj", "v"),
    Rule("o_proj", "o"),
    Rule("gate_proj", "gate"),
    Rule("up_proj", "up"),
    Rule("down_proj", "down"),
    Rule("embed_tokens", "embed"),
    Rule("lm_head", "lm_head"),
    # BERT (and its relatives: RoBERTa, MiniLM)
    Rule("attention.self.query", "q"),
    Rule("attention.self.key", "k"),
    Rule("attention.self.value", "v"),
    Rule("attention.output.dense", "o"),
    Rule("intermediate.dense", "up"),
    Rule("output.dense", "down"),
    Rule("word_embeddings", "embed"),
    # GPT-2: c_attn holds [W_q; W_k; W_v] (out, in) once transposed from Conv1D's (in, out)
    Rule("attn.c_attn", "qkv", split=("q", "k", "v"), conv1d=True),
    Rule("attn.c_proj", "o", conv1d=True),
    Rule("mlp.c_fc", "up", conv1d=True),
    Rule("mlp.c_proj", "down", conv1d=True),
    Rule("wte", "embed"),
    # OPT, BART, ViT-style blocks
    Rule("out_proj", "o"),
    Rule("fc1", "up"),
    Rule("fc2", "down"),
)

# model_type values (config.json) whose Conv1D-named modules really are Conv1D; a model that
# declares another model_type stores even GPT-2-like names as nn.Linear (e.g. Qwen-1's c_attn).
CONV1D_MODEL_TYPES = frozenset({"gpt2", "imagegpt", "decision_transformer"})

# Longest suffix first, so "attention.output.dense" wins over "output.dense".
_ORDERED = sorted(RULES, key=lambda rule: -rule.suffix.count("."))
_PATTERNS = [(re.compile(r"(?:^|\.)" + re.escape(rule.suffix) + r"$"), rule) for rule in _ORDERED]
_LAYER = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks)\.(\d+)(?:\.|$)")


@dataclass(frozen=True)
class ModuleName:
    """Where a module sits: its block index (None for embeddings and heads) and its role."""

    module: str
    layer: int | None
    role: str
    split: tuple[str, ...] = ()
    conv1d: bool = False

    def part_names(self) -> list[str]:
        """The names of the deltas this module yields: ``<module>.q`` etc. for a fused one."""
        return [f"{self.module}.{part}" for part in self.split] if self.split else [self.module]


def layer_index(module: str) -> int | None:
    """The block index from ``layers.N``, ``layer.N``, ``h.N`` or ``blocks.N``; None if absent."""
    match = _LAYER.search(module)
    return int(match.group(1)) if match else None


def module_name(module: str, model_type: str | None = None) -> ModuleName:
    """The (layer, role) of ``module``; role ``other`` when no rule matches.

    ``model_type`` (from config.json) decides whether Conv1D-named modules are Conv1D; without
    it the names decide.
    """
    layer = layer_index(module)
    for pattern, rule in _PATTERNS:
        if pattern.search(module):
            conv1d = rule.conv1d and (model_type is None or model_type in CONV1D_MODEL_TYPES)
            return ModuleName(module, layer, rule.role, rule.split, conv1d)
    return ModuleName(module, layer, "other")


def strip_weight(key: str) -> str:
    """The module name of a tensor key: the key without its trailing ``.weight``."""
    return key[: -len(".weight")] if key.endswith(".weight") else key


def natural_key(name: str) -> tuple:
    """A sort key putting ``layers.2`` before ``layers.10``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))
