"""The objectives against independent computations: InfoNCE in numpy, mean pooling against
sentence-transformers, causal LM loss by hand, and the batches' determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finetune_helpers import TEXTS
from lab.errors import InputError
from lab.finetune.corpus import Document, read_texts
from lab.finetune.models import CAUSAL_LM, CONTRASTIVE, load_model, resolve_base
from lab.finetune.objectives import Batches, info_nce, loss, mean_pool


@pytest.fixture(scope="module")
def minilm():
    return load_model(resolve_base("minilm"))


def test_info_nce_matches_numpy():
    g = torch.Generator().manual_seed(0)
    a, p = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.randn(5, 7, generator=g, dtype=torch.float64)
    an = a.numpy() / np.linalg.norm(a.numpy(), axis=1, keepdims=True)
    pn = p.numpy() / np.linalg.norm(p.numpy(), axis=1, keepdims=True)
    logits = an @ pn.T / 0.1
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -np.mean(np.diag(log_softmax))
    assert float(info_nce(a, p, temperature=0.1)) == pytest.approx(expected, rel=1e-12)


def test_mean_pooling_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    model, tokenizer = minilm
    texts = TEXTS[:3]
    enc = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        ours = mean_pool(model(**enc).last_hidden_state, enc["attention_mask"])
    reference = st.SentenceTransformer(str(resolve_base("minilm").path), device="cpu")
    theirs = reference.encode(texts, convert_to_tensor=True, normalize_embeddings=False)
    # the packaged pipeline ends with a Normalize module; compare directions
    cos = torch.nn.functional.cosine_similarity(ours, theirs.to(ours.dtype), dim=-1)
    assert torch.all(cos > 1 - 1e-5)


def test_contrastive_loss_is_info_nce_of_pooled_embeddings(minilm, texts_file):
    model, tokenizer = minilm
    batches = Batches(read_texts(texts_file), tokenizer, CONTRASTIVE, batch_size=4, max_length=32, seed=0)
    batch = next(iter(batches))
    with torch.no_grad():
        got = float(loss(model, batch, temperature=0.05))
        emb = [mean_pool(model(**x).last_hidden_state, x["attention_mask"]) for x in (batch.anchors, batch.positives)]
    assert got == pytest.approx(float(info_nce(*emb, temperature=0.05)), rel=1e-6)
    assert batch.anchors["input_ids"].shape[0] == 4


def test_causal_lm_loss_by_hand(tiny_llama_dir, texts_file):
    model, tokenizer = load_model(resolve_base(str(tiny_llama_dir)))
    batch = next(iter(Batches(read_texts(texts_file), tokenizer, CAUSAL_LM, batch_size=3, max_length=64, seed=0)))
    ids, mask = batch.texts["input_ids"], batch.texts["attention_mask"]
    assert (mask == 0).any(), "the texts should have different lengths, so padding is exercised"
    with torch.no_grad():
        got = float(loss(model, batch))
        logits = model(input_ids=ids, attention_mask=mask).logits.double()
    # token t predicts token t+1; padded targets do not count
    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
    keep = mask[:, 1:].bool()
    assert got == pytest.approx(float(-logp[keep].mean()), rel=1e-5)


def test_batches_are_seeded_and_have_unique_anchors(minilm):
    _, tokenizer = minilm
    docs = [Document(f"title {i % 5}", f"text number {i}", "t") for i in range(20)]  # duplicate titles
    first = Batches(docs, tokenizer, CONTRASTIVE, batch_size=4, max_length=16, seed=3)
    again = Batches(docs, tokenizer, CONTRASTIVE, batch_size=4, max_length=16, seed=3)
    other = Batches(docs, tokenizer, CONTRASTIVE, batch_size=4, max_length=16, seed=4)
    a, b, c = ([next(it).anchors["input_ids"] for _ in range(6)] for it in map(iter, (first, again, other)))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, c))
    for ids in a:
        assert len({tuple(row.tolist()) for row in ids}) == 4  # no anchor twice: no false negatives


def test_too_small_corpus_is_an_input_error(minilm):
    _, tokenizer = minilm
    with pytest.raises(InputError, match="usable examples"):
        Batches([Document("", "only text", "t")] * 3, tokenizer, CONTRASTIVE, batch_size=2, max_length=8, seed=0)
