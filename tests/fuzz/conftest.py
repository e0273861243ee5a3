"""The pristine inputs the fuzz suite damages.

The Hypothesis profiles (``ci`` by default, ``long`` by hand) are registered in tests/conftest.py,
so that ``--hypothesis-profile=long`` works from the repository's root. Each test takes a share of
``max_examples`` through ``fuzz_helpers.budget``.

A failing example found by either becomes a plain test in ``test_regressions.py``.

The pristine inputs are real artifacts (tiny LLaMA and GPT-2 models saved with
``save_pretrained``, PEFT LoRA and DoRA adapters) built once per session. Tests never damage
them in place: each example copies what it needs into a fresh temporary folder first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import builders
from fuzz_helpers import Inputs


@pytest.fixture(scope="session")
def fuzz_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pristine")


@pytest.fixture(scope="session")
def llama_base(fuzz_root) -> Path:
    return builders.save(builders.tiny_llama(seed=0), fuzz_root / "llama_base")


@pytest.fixture(scope="session")
def gpt2_base(fuzz_root) -> Path:
    return builders.save(builders.tiny_gpt2(seed=0), fuzz_root / "gpt2_base")


def _fine_tune():
    return builders.perturb(builders.tiny_llama(seed=0), seed=7)


@pytest.fixture(scope="session")
def llama_full(fuzz_root, llama_base) -> Inputs:
    """A full fine-tune in one model.safetensors."""
    return Inputs(builders.save(_fine_tune(), fuzz_root / "llama_full"), llama_base)


@pytest.fixture(scope="session")
def llama_sharded(fuzz_root, llama_base) -> Inputs:
    """A full fine-tune in several safetensors shards and model.safetensors.index.json."""
    path = builders.save(_fine_tune(), fuzz_root / "llama_sharded", max_shard_size="20KB")
    assert (path / "model.safetensors.index.json").is_file()
    return Inputs(path, llama_base)


def _save_bin(model, path: Path, shards: int = 1) -> Path:
    """``model`` saved as transformers wrote pickles before safetensors: ``pytorch_model.bin``, or
    ``pytorch_model-0000i-of-0000n.bin`` shards and ``pytorch_model.bin.index.json`` (this
    transformers always writes safetensors, so the layout is written here with ``torch.save``)."""
    path.mkdir(parents=True)
    model.config.save_pretrained(path)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if shards == 1:
        torch.save(state, path / "pytorch_model.bin")
        return path
    keys = sorted(state)
    weight_map = {}
    for i in range(shards):
        name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = {k: state[k] for k in keys[i::shards]}
        torch.save(part, path / name)
        weight_map.update(dict.fromkeys(part, name))
    total = sum(t.numel() * t.element_size() for t in state.values())
    (path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    return path


@pytest.fixture(scope="session")
def llama_sharded_bin(fuzz_root, llama_base) -> Inputs:
    """A full fine-tune in pytorch_model-*.bin shards and pytorch_model.bin.index.json."""
    return Inputs(_save_bin(_fine_tune(), fuzz_root / "llama_sharded_bin", shards=3), llama_base)


@pytest.fixture(scope="session")
def llama_bin(fuzz_root, llama_base) -> Inputs:
    """A full fine-tune in one pytorch_model.bin (a zip-format torch pickle)."""
    return Inputs(_save_bin(_fine_tune(), fuzz_root / "llama_bin"), llama_base)


def _peft(model, path: Path, safe: bool = True, **config) -> Path:
    """A PEFT adapter saved by PEFT; ``safe=False`` rewrites its weights as ``adapter_model.bin``
    the way PEFT's pickle path does (``torch.save`` of the same state dict)."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file

    peft_model = get_peft_model(model, LoraConfig(**config))
    builders.randomize_lora(peft_model)
    peft_model.save_pretrained(path)
    if not safe:
        weights = path / "adapter_model.safetensors"
        torch.save(load_file(weights), path / "adapter_model.bin")
        weights.unlink()
    return path


@pytest.fixture(scope="session")
def llama_lora(fuzz_root, llama_base) -> Inputs:
    """LoRA r=4, α=8 on q/v/up and the token embedding (lora_embedding_A/B) of the tiny LLaMA."""
    path = _peft(builders.tiny_llama(seed=0), fuzz_root / "llama_lora", r=4, lora_alpha=8,
                 target_modules=["q_proj", "v_proj", "up_proj", "embed_tokens"])
    return Inputs(path, llama_base)


@pytest.fixture(scope="session")
def llama_lora_bin(fuzz_root, llama_base) -> Inputs:
    """The LoRA adapter saved as adapter_model.bin (a torch pickle)."""
    path = _peft(builders.tiny_llama(seed=0), fuzz_root / "llama_lora_bin", safe=False, r=4, lora_alpha=8,
                 target_modules=["q_proj", "v_proj"])
    assert (path / "adapter_model.bin").is_file()
    return Inputs(path, llama_base)


@pytest.fixture(scope="session")
def llama_dora(fuzz_root, llama_base) -> Inputs:
    """DoRA (use_dora) r=4 on q/v with rsLoRA scaling and per-module rank/alpha patterns."""
    path = _peft(builders.tiny_llama(seed=0), fuzz_root / "llama_dora", r=4, lora_alpha=8, use_dora=True,
                 use_rslora=True, target_modules=["q_proj", "v_proj"], rank_pattern={"v_proj": 2},
                 alpha_pattern={"q_proj": 16})
    return Inputs(path, llama_base)


@pytest.fixture(scope="session")
def gpt2_lora(fuzz_root, gpt2_base) -> Inputs:
    """LoRA on GPT-2's fused c_attn and c_proj (transformers Conv1D, fan_in_fan_out)."""
    path = _peft(builders.tiny_gpt2(seed=0), fuzz_root / "gpt2_lora", r=4, lora_alpha=8, fan_in_fan_out=True,
                 target_modules=["c_attn", "c_proj"])
    return Inputs(path, gpt2_base)


@pytest.fixture(scope="session")
def adapters(llama_lora, llama_dora, gpt2_lora) -> dict[str, Inputs]:
    return {"llama_lora": llama_lora, "llama_dora": llama_dora, "gpt2_lora": gpt2_lora}
