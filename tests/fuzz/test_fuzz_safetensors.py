"""Damaged safetensors files (a full fine-tune, its base, LoRA/DoRA/GPT-2 adapters) meet the
contract through ``lab.analyze``: header entries with any dtype, shape or offsets, consistent
reinterpretations (same bytes read as another dtype or shape), missing, renamed and duplicated
keys, garbage metadata, a wrong length prefix, truncation and byte flips anywhere."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fuzz_helpers import analyze_contract, budget, copy_inputs, workspace
from fuzz_safetensors import damage, safetensors_mutations as mutations


@budget(1.0)
@given(mutation=mutations)
def test_damaged_full_checkpoint(llama_full, mutation):
    """A full fine-tune's model.safetensors damaged: a finite run, or one line naming that file."""
    with workspace() as work:
        inputs = copy_inputs(llama_full, work)
        target = inputs.ckpt / "model.safetensors"
        damage(target, mutation)
        analyze_contract(work, inputs, [target])


@budget(0.4)
@given(mutation=mutations)
def test_damaged_base(llama_full, mutation):
    """The base's model.safetensors damaged (the fine-tune intact): a finite run, or one line naming the base file."""
    with workspace() as work:
        inputs = copy_inputs(llama_full, work, base=True)
        target = inputs.base / "model.safetensors"
        damage(target, mutation)
        analyze_contract(work, inputs, [target], probes=["deltas"])


@budget(1.2)
@given(name=st.sampled_from(("llama_lora", "llama_dora", "gpt2_lora")), mutation=mutations, with_base=st.booleans())
def test_damaged_adapter_weights(adapters, name, mutation, with_base):
    """An adapter_model.safetensors damaged: a finite run (all probes), or one line naming that file."""
    with workspace() as work:
        inputs = copy_inputs(adapters[name], work)
        target = inputs.ckpt / "adapter_model.safetensors"
        damage(target, mutation)
        analyze_contract(work, inputs, [target], with_base=with_base)
