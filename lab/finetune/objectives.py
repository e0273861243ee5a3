"""Training objectives: in-batch contrastive (InfoNCE) for encoders, causal LM for decoders,
and the deterministic batches they are fed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from lab.errors import InputError
from lab.finetune.corpus import Document, contrastive_pairs
from lab.finetune.models import CAUSAL_LM, CONTRASTIVE


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Sentence embeddings: the mean of the token states over non-padding tokens (the pooling
    all-MiniLM-L6-v2 is trained with; Reimers & Gurevych, 2019, Sentence-BERT)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """InfoNCE with in-batch negatives (van den Oord et al., 2018; the multiple-negatives ranking
    loss of Henderson et al., 2017): L = −(1/n) Σ_i log softmax_j(cos(a_i, p_j)/τ)_i.

    Row i's positive is ``positives[i]``; every other row's positive is one of its negatives.
    """
    sim = F.normalize(anchors, dim=-1) @ F.normalize(positives, dim=-1).T / temperature
    return F.cross_entropy(sim, torch.arange(sim.shape[0], device=sim.device))


@dataclass
class Batch:
    """Tokenized inputs for one step: ``anchors``/``positives`` for the contrastive objective,
    ``texts`` (with ``labels``) for the causal LM."""

    objective: str
    anchors: dict[str, torch.Tensor] | None = None
    positives: dict[str, torch.Tensor] | None = None
    texts: dict[str, torch.Tensor] | None = None


def loss(model, batch: Batch, temperature: float = 0.05) -> torch.Tensor:
    """The batch's training loss under its objective (a scalar tensor with gradients)."""
    if batch.objective == CONTRASTIVE:
        a = mean_pool(model(**batch.anchors).last_hidden_state, batch.anchors["attention_mask"])
        p = mean_pool(model(**batch.positives).last_hidden_state, batch.positives["attention_mask"])
        return info_nce(a, p, temperature)
    # Causal LM: transformers shifts the labels; padding positions carry label −100 (ignored).
    return model(**batch.texts).loss


class Batches:
    """An endless, seeded stream of batches over a corpus.

    Each epoch visits the examples in a fresh permutation drawn from ``numpy.random.default_rng
    (seed)``, so the same seed gives the same batches in the same order. A contrastive batch never
    holds the same anchor twice (a duplicate would be a false in-batch negative).
    """

    def __init__(self, docs: list[Document], tokenizer, objective: str, batch_size: int, max_length: int, seed: int):
        if objective == CONTRASTIVE:
            self.examples: list = contrastive_pairs(docs)
            need = "texts with at least two sentences (the first is paired with the rest)"
        else:
            self.examples = [" ".join(x for x in (d.title, d.text) if x) for d in docs]
            need = "texts"
        if len(self.examples) < max(batch_size, 2):
            raise InputError(f"the corpus has {len(self.examples)} usable examples for batch size {batch_size}; give more {need} or a smaller --batch-size")
        self.tokenizer, self.objective = tokenizer, objective
        self.batch_size, self.max_length = batch_size, max_length
        self.rng = np.random.default_rng(seed)

    def _tok(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"))

    def make(self, examples: list) -> Batch:
        """The batch of the given examples (pairs or texts)."""
        if self.objective == CONTRASTIVE:
            return Batch(CONTRASTIVE, anchors=self._tok([a for a, _ in examples]), positives=self._tok([p for _, p in examples]))
        enc = self._tok(list(examples))
        labels = enc["input_ids"].clone()
        labels[enc["attention_mask"] == 0] = -100
        enc["labels"] = labels
        enc.pop("token_type_ids", None)  # decoders take no segment ids
        return Batch(CAUSAL_LM, texts=enc)

    def __iter__(self) -> Iterator[Batch]:
        while True:
            order = self.rng.permutation(len(self.examples))
            chosen: list = []
            anchors: set[str] = set()
            for i in order:
                ex = self.examples[i]
                if self.objective == CONTRASTIVE and ex[0] in anchors:
                    continue
                chosen.append(ex)
                if self.objective == CONTRASTIVE:
                    anchors.add(ex[0])
                if len(chosen) == self.batch_size:
                    yield self.make(chosen)
                    chosen, anchors = [], set()
