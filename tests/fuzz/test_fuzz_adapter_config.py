"""Damaged ``adapter_config.json`` files of real PEFT adapters (LoRA, DoRA with rsLoRA and
patterns, GPT-2 Conv1D) meet the contract through ``lab.analyze``: any JSON value in any field,
numbers at the edges of float64, wrong types, nested garbage, broken JSON."""

from __future__ import annotations

import pytest
import json
import math

from hypothesis import given
from hypothesis import strategies as st

from fuzz_helpers import (
    analyze_contract,
    budget,
    copy_inputs,
    dumps,
    edge_numbers,
    json_values,
    magnitudes,
    numbers,
    workspace,
)
from lab.errors import LabError

ADAPTERS = ("llama_lora", "llama_dora", "gpt2_lora")
CONFIG = "adapter_config.json"

FIELDS = ("r", "lora_alpha", "use_rslora", "use_dora", "fan_in_fan_out", "rank_pattern", "alpha_pattern",
          "layers_to_transform", "peft_type", "target_modules", "bias", "modules_to_save", "layers_pattern")
# Module-name regexes as PEFT users write them, and ones that break when PEFT embeds them in
# its own pattern (global flags, group references, unbalanced parentheses).
PATTERN_KEYS = ("q_proj", "v_proj", "up_proj", "embed_tokens", "c_attn", "model.layers.0.self_attn.q_proj",
                "layers.1.self_attn.v_proj", ".*", "(?i)q_proj", "q_proj|v_proj", "[", "a)(b", r"\1", r"\2",
                "(?P<x>q_proj)", "(?P=x)", "q_proj$", "^v_proj", "")
ranks = st.sampled_from([1, 2, 4, 8]) | st.integers(min_value=-3, max_value=70)

FIELD_VALUES = {
    "r": ranks | numbers | json_values,
    "lora_alpha": numbers | json_values,
    "use_rslora": st.booleans() | json_values,
    "use_dora": st.booleans() | json_values,
    "fan_in_fan_out": st.booleans() | json_values,
    "layers_to_transform": st.lists(st.integers(-2, 3), max_size=3) | st.integers(-2, 3) | json_values,
    "peft_type": st.sampled_from(["LORA", "lora", "LOHA", "IA3", ""]) | json_values,
}

set_field = st.sampled_from(FIELDS).flatmap(
    lambda f: st.tuples(st.just("set"), st.just(f), FIELD_VALUES.get(f, json_values))
)
set_other = st.tuples(st.just("set"), st.text(max_size=10), json_values)
delete_field = st.tuples(st.just("delete"), st.sampled_from(FIELDS))
pattern_entry = st.tuples(
    st.just("pattern"), st.sampled_from(["rank_pattern", "alpha_pattern"]),
    st.sampled_from(PATTERN_KEYS) | st.text(max_size=10), ranks | numbers | json_values,
)
edits = st.lists(set_field | set_other | delete_field | pattern_entry, min_size=1, max_size=3).map(
    lambda ops: ("edits", tuple(ops))
)
whole_file = (
    st.tuples(st.just("replace"), json_values)
    | st.tuples(st.just("truncate"), st.integers(min_value=0, max_value=4000))
    | st.tuples(st.just("bytes"), st.binary(max_size=48))
)
config_mutations = st.one_of(edits, edits, edits, whole_file)


def mutated_config(text: str, mutation: tuple) -> bytes:
    """The bytes of ``adapter_config.json`` after ``mutation`` (see the strategies above)."""
    kind = mutation[0]
    if kind == "replace":
        return dumps(mutation[1]).encode()
    if kind == "truncate":
        return text.encode()[: mutation[1] % (len(text) + 1)]
    if kind == "bytes":
        return mutation[1]
    config = json.loads(text)
    for op in mutation[1]:
        if op[0] == "set":
            config[op[1]] = op[2]
        elif op[0] == "delete":
            config.pop(op[1], None)
        else:
            _, field, key, value = op
            patterns = config.get(field)
            config[field] = {**(patterns if isinstance(patterns, dict) else {}), key: value}
    return dumps(config).encode()


@budget(0.9)
@given(name=st.sampled_from(ADAPTERS), mutation=config_mutations, with_base=st.booleans())
def test_damaged_adapter_config(adapters, name, mutation, with_base):
    """Any edit of any field (or of the whole file): a complete finite run, or one LabError line naming the config."""
    with workspace() as work:
        inputs = copy_inputs(adapters[name], work)
        config = inputs.ckpt / CONFIG
        config.write_bytes(mutated_config(config.read_text(), mutation))
        analyze_contract(work, inputs, [config], with_base=with_base)


alphas = st.one_of(edge_numbers, magnitudes, magnitudes, st.integers())


# The search reaches scales near float64's limits: the probes work on max-entry-scaled matrices
# there (lab.kernels.linalg.rescaled), and an s·B·A beyond float64 is an error naming the field.
@budget(0.6)
@given(name=st.sampled_from(("llama_lora", "gpt2_lora")), alpha=alphas, rslora=st.booleans(), with_base=st.booleans())
def test_lora_alpha_gives_peft_scale_or_names_the_field(adapters, name, alpha, rslora, with_base):
    """Any lora_alpha: a finite run whose scale column is PEFT's α/r (α/√r with rsLoRA), or an
    error naming adapter_config.json and 'lora_alpha' (the reported 1e308 ended in OverflowError)."""
    with workspace() as work:
        inputs = copy_inputs(adapters[name], work)
        config_path = inputs.ckpt / CONFIG
        config = json.loads(config_path.read_text())
        config.update(lora_alpha=alpha, use_rslora=rslora)
        config_path.write_text(dumps(config))
        result = analyze_contract(work, inputs, [config_path], with_base=with_base)
        if isinstance(result, LabError):
            assert "lora_alpha" in str(result), str(result)
            return
        r = config["r"]
        expected = float(alpha) / (math.sqrt(r) if rslora else r)
        scales = result.table("deltas")["scale"].to_numpy(dtype=float)
        assert all(math.isclose(s, expected, rel_tol=1e-12, abs_tol=0.0) for s in scales), (scales, expected)
