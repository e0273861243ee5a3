"""Real PEFT adapters on the tiny LLaMA for the merge and msu_pairs tests, built with peft itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from peft import LoraConfig, get_peft_model

import builders


def make_adapter(path: Path, seed: int, **config) -> Path:
    """A LoRA adapter of the tiny LLaMA (base seed 0) with seeded random factors, saved at ``path``."""
    config.setdefault("target_modules", ["q_proj", "v_proj"])
    model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(**config))
    builders.randomize_lora(model, seed=seed)
    model.save_pretrained(path)
    return Path(path)


@pytest.fixture(scope="session")
def llama_base(tmp_path_factory):
    return builders.save(builders.tiny_llama(seed=0), tmp_path_factory.mktemp("merge_llama") / "base")


@pytest.fixture(scope="session")
def adapters(tmp_path_factory):
    """Three adapters of one base: r = 4 plain, r = 4 rsLoRA, r = 6 with a rank/alpha pattern and an extra module."""
    root = tmp_path_factory.mktemp("merge_adapters")
    return {
        "a": make_adapter(root / "a", 11, r=4, lora_alpha=8),
        "b": make_adapter(root / "b", 12, r=4, lora_alpha=4, use_rslora=True),
        "c": make_adapter(root / "c", 13, r=6, lora_alpha=6, target_modules=["q_proj", "v_proj", "o_proj"],
                          rank_pattern={"o_proj": 2}, alpha_pattern={"v_proj": 12.0}),
    }
