"""Real inputs for the squeeze tests: PEFT LoRA adapters of the tiny LLaMA (float32 and float64),
an MPS adapter, a DoRA adapter and a full fine-tune whose updates have a known decaying spectrum."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import builders
from squeeze_inputs import lora_adapter


@pytest.fixture(scope="session")
def llama_base(tmp_path_factory) -> Path:
    return builders.save(builders.tiny_llama(seed=0), tmp_path_factory.mktemp("squeeze_llama") / "base")


@pytest.fixture(scope="session")
def adapters(tmp_path_factory, llama_base) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("squeeze_inputs")
    from lab.finetune.mps import save_mps, wrap_mps

    mps_model = builders.tiny_llama(seed=0)
    torch.manual_seed(5)
    wrap_mps(mps_model, ["q_proj", "v_proj"], r=8, chi=3, alpha=16.0)
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for p in mps_model.parameters():
            if p.requires_grad:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    save_mps(mps_model, root / "mps", base_path=str(llama_base), targets=["q_proj", "v_proj"])
    return {
        "f32": lora_adapter(root / "f32", 1, r=8, lora_alpha=16),
        "f64": lora_adapter(root / "f64", 2, dtype=torch.float64, r=8, lora_alpha=4, use_rslora=True,
                            rank_pattern={"o_proj": 6}, alpha_pattern={"v_proj": 3.0}),
        "dora": lora_adapter(root / "dora", 3, r=4, lora_alpha=8, use_dora=True),
        "mps": root / "mps",
    }


@pytest.fixture(scope="session")
def full_finetune(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """The tiny LLaMA with ΔW = U·diag(2^-i)·Vᵀ added to every q_proj and o_proj (other weights
    unchanged), saved with save_pretrained; and the exact updates by module name."""
    model = builders.tiny_llama(seed=0)
    rng = np.random.default_rng(7)
    deltas = {}
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(("q_proj", "o_proj")):
                m, n = module.weight.shape
                U, _ = np.linalg.qr(rng.standard_normal((m, m)))
                V, _ = np.linalg.qr(rng.standard_normal((n, n)))
                q = min(m, n)
                delta = (U[:, :q] * (0.5 ** np.arange(q))) @ V[:, :q].T * 0.05
                module.weight.add_(torch.from_numpy(delta).float())
                deltas[name] = delta
    path = builders.save(model, tmp_path_factory.mktemp("squeeze_full") / "full")
    return path, deltas
