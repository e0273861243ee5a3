"""Real artifacts for tests: tiny transformers models saved with ``save_pretrained`` and real
PEFT adapters. Every builder is seeded, so the same call gives the same weights."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)


def tiny_llama(seed: int = 0, dtype: torch.dtype = torch.float32) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(cfg).to(dtype)


def tiny_gpt2(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg)


def tiny_bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64,
    )
    return BertModel(cfg)


def perturb(model: torch.nn.Module, seed: int = 1, eps: float = 1e-2) -> torch.nn.Module:
    """A stand-in full fine-tune: every parameter moved by a seeded Gaussian step."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(eps * torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype))
    return model


def randomize_lora(peft_model, seed: int = 2, std: float = 0.1):
    """PEFT initialises lora_B to zero (ΔW = 0); give every factor (and DoRA magnitude) values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(std * torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype))
            elif "magnitude" in name:
                p.mul_(1 + 0.1 * torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype))
    return peft_model


def save(model, path: Path, **kwargs) -> Path:
    path = Path(path)
    model.save_pretrained(path, **kwargs)
    return path


# ---- texts and a tokenizer built offline, for the probes that run models on text ----

WORDS = ("the model reads a text and every token attends to the tokens before it while the head "
         "learns which word matters most for the next one in a long sentence").split()


def word_tokenizer(folder, eos=True):
    """A word-level fast tokenizer over WORDS (+ unk and eos), built offline and saved with save_pretrained."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "</s>": 1, **{w: i + 2 for i, w in enumerate(dict.fromkeys(WORDS))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", **({"eos_token": "</s>"} if eos else {}))
    fast.save_pretrained(folder)
    return fast


def texts_file(path, n=12, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    lines = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))) for _ in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path, lines
