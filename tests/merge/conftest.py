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


def bert_base(folder: Path):
    """The tiny BERT saved with a word-level tokenizer that wraps a text in [CLS] … [SEP], as BERT's does
    (an encoder without LM head: lab fine-tunes and evaluates it with the contrastive objective)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    base = builders.save(builders.tiny_bert(seed=0), folder)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {w: i for i, w in enumerate([*specials, *dict.fromkeys(builders.WORDS)])}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]")
    tok.save_pretrained(folder)
    assert tok("the model")["input_ids"] == [2, vocab["the"], vocab["model"], 3]
    return base, tok
