"""A real PEFT LoRA adapter of the tiny LLaMA for the squeeze tests (a module of its own: ``conftest``
is not importable by name when several test folders have one)."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

import builders


def lora_adapter(path: Path, seed: int, dtype=torch.float32, **config) -> Path:
    config.setdefault("target_modules", ["q_proj", "v_proj", "o_proj"])
    model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(**config))
    builders.randomize_lora(model, seed=seed)
    model.to(dtype).save_pretrained(path)
    return Path(path)
