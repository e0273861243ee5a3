"""One module's weight update, dense or factored.

Convention: every matrix is (out_features, in_features), the layout of
``torch.nn.Linear.weight``. GPT-2 ``Conv1D`` weights and PEFT ``fan_in_fan_out``
adapters are transposed into it on reading; embedding tables keep their stored
(num_embeddings, embedding_dim) layout. Arithmetic is float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("lora", "full", "dora")


@dataclass
class Delta:
    """A weight update ``ΔW`` of one module.

    Either ``dense`` holds ΔW, or ``B`` (rows × r), ``A`` (r × cols) and ``scale`` hold the
    factors of ΔW = scale · B · A, which are multiplied out only by :meth:`to_dense`.
    ``base`` is the module's base weight W when one was given (same layout as ΔW).
    """

    module: str  # module path without ``.weight`` and without PEFT's ``base_model.model.``
    layer: int | None
    role: str  # q, k, v, o, up, down, gate, fc_in, fc_out, embed, ..., other
    kind: str  # one of KINDS
    shape: tuple[int, int]
    dense: np.ndarray | None = None
    B: np.ndarray | None = None
    A: np.ndarray | None = None
    scale: float = 1.0
    base: np.ndarray | None = field(default=None, repr=False)
    note: str = ""  # e.g. "dora: low-rank part only (no --base)"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown delta kind {self.kind!r}")
        if (self.dense is None) == (self.B is None or self.A is None):
            raise ValueError("a Delta needs either `dense` or both factors `B` and `A`")
        self.shape = (int(self.shape[0]), int(self.shape[1]))
        if self.dense is not None and self.dense.shape != self.shape:
            raise ValueError(f"dense shape {self.dense.shape} != {self.shape}")
        if self.is_factored:
            if self.B.shape[0] != self.shape[0] or self.A.shape[1] != self.shape[1] or self.B.shape[1] != self.A.shape[0]:
                raise ValueError(f"factor shapes B{self.B.shape} A{self.A.shape} do not make {self.shape}")

    @property
    def is_factored(self) -> bool:
        return self.dense is None

    @property
    def rank_bound(self) -> int:
        """The largest rank ΔW can have: r for factors, min(rows, cols) for a dense update."""
        return int(self.B.shape[1]) if self.is_factored else min(self.shape)

    def to_dense(self) -> np.ndarray:
        """ΔW as a float64 array (multiplies the factors out when factored)."""
        if self.is_factored:
            return self.scale * (self.B @ self.A)
        return self.dense

    def fro_norm(self) -> float:
        """‖ΔW‖_F; for factors from the r×r Gram matrices: ‖sBA‖_F² = s²·tr((BᵀB)(AAᵀ))."""
        if self.is_factored:
            g = (self.B.T @ self.B) * (self.A @ self.A.T)  # elementwise: tr(XY) = Σ X∘Yᵀ, both symmetric
            return float(abs(self.scale) * np.sqrt(max(g.sum(), 0.0)))
        return float(np.linalg.norm(self.dense))
