"""Fixtures for the fine-tuning tests: a small text file, a tiny LLaMA with a tokenizer trained
offline, and short fine-tunes of each method on MiniLM and on the tiny LLaMA (made once per
session, because every one of them is real training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from builders import save, tiny_llama
from finetune_helpers import FIXED, TEXTS, run


@pytest.fixture(scope="session")
def texts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "texts.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A tiny LLaMA (vocabulary 64) saved with save_pretrained, with a BPE tokenizer of at most 64
    tokens trained offline on the test texts, so the model folder is complete on its own."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=64, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=40))
    assert tok.get_vocab_size() <= 64  # the tiny LLaMA's embedding table
    folder = tmp_path_factory.mktemp("tiny-llama")
    save(tiny_llama(seed=0), folder)
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>").save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def minilm_lora(tmp_path_factory, texts_file) -> Path:
    return run(tmp_path_factory.mktemp("runs") / "minilm-lora", model="minilm", method="lora", texts=str(texts_file), lr=2e-3, **FIXED)


@pytest.fixture(scope="session")
def minilm_full(tmp_path_factory, texts_file) -> Path:
    return run(tmp_path_factory.mktemp("runs") / "minilm-full", model="minilm", method="full", texts=str(texts_file), lr=1e-4, **FIXED)


@pytest.fixture(scope="session")
def llama_lora(tmp_path_factory, tiny_llama_dir, texts_file) -> Path:
    return run(tmp_path_factory.mktemp("runs") / "llama-lora", model=str(tiny_llama_dir), method="lora", texts=str(texts_file), lr=1e-2, **FIXED)


@pytest.fixture(scope="session")
def llama_full(tmp_path_factory, tiny_llama_dir, texts_file) -> Path:
    return run(tmp_path_factory.mktemp("runs") / "llama-full", model=str(tiny_llama_dir), method="full", texts=str(texts_file), lr=1e-2, **FIXED)


@pytest.fixture(scope="session")
def minilm_mps(tmp_path_factory, texts_file) -> Path:
    """MPS Adaptation on MiniLM's query and value (d_in 384 = 16·24), r = 4, χ = 3."""
    return run(tmp_path_factory.mktemp("runs") / "minilm-mps", model="minilm", method="mps", texts=str(texts_file),
               lr=2e-3, **{**FIXED, "steps": 3}, chi=3)


@pytest.fixture(scope="session")
def llama_mps(tmp_path_factory, tiny_llama_dir, texts_file) -> Path:
    return run(tmp_path_factory.mktemp("runs") / "llama-mps", model=str(tiny_llama_dir), method="mps", texts=str(texts_file),
               lr=1e-2, **{**FIXED, "steps": 3}, chi=2)
