"""DoRA's effective update, exactly as PEFT merges it.

DoRA (Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation", eq. 5) writes the
adapted weight as W' = m · (W + sBA) / ‖W + sBA‖_c, with the norm taken per output row of
the (out, in) weight (PEFT's ``DoraLinearLayer.get_weight_norm``: ``norm(dim=1)`` after
transposing Conv1D weights to (out, in)). For an embedding, whose table is stored
(num_embeddings, dim), PEFT's ``DoraEmbeddingLayer`` takes the norm per embedding dimension,
i.e. per column. The update is ΔW = W' − W; it needs the base weight W.
"""

from __future__ import annotations

import numpy as np

NOTE_NO_BASE = "dora: low-rank part only (no --base)"


def dora_update(W: np.ndarray, B: np.ndarray, A: np.ndarray, scale: float, magnitude: np.ndarray, *, per_column: bool = False) -> np.ndarray:
    """ΔW = m · (W + sBA) / ‖W + sBA‖ − W, norms per row (per column for embeddings)."""
    V = W + scale * (B @ A)
    norm = np.linalg.norm(V, axis=0 if per_column else 1, keepdims=True)
    return (magnitude.reshape(norm.shape) / norm) * V - W
