"""Session artifacts for the checkpoint tests: tiny base models saved with ``save_pretrained``
(LLaMA, GPT-2, BERT), each built once per session because many tests read them."""

from __future__ import annotations

import pytest

import builders


@pytest.fixture(scope="session")
def llama_base(tmp_path_factory):
    return builders.save(builders.tiny_llama(seed=0), tmp_path_factory.mktemp("llama") / "base")


@pytest.fixture(scope="session")
def gpt2_base(tmp_path_factory):
    return builders.save(builders.tiny_gpt2(seed=0), tmp_path_factory.mktemp("gpt2") / "base")


@pytest.fixture(scope="session")
def bert_base(tmp_path_factory):
    return builders.save(builders.tiny_bert(seed=0), tmp_path_factory.mktemp("bert") / "base")


@pytest.fixture(scope="session")
def llama_lora(tmp_path_factory):
    """A plain LoRA adapter on q/v of the tiny LLaMA (seed 0), saved, with its PEFT model."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    builders.randomize_lora(model)
    path = tmp_path_factory.mktemp("llama_lora") / "adapter"
    model.save_pretrained(path)
    return path, model
