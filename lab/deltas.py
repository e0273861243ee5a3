"""One module's weight update, held one way: a dense array, factors, or a streamed source.

Convention: every matrix is (out_features, in_features), the layout of
``torch.nn.Linear.weight``. GPT-2 ``Conv1D`` weights and PEFT ``fan_in_fan_out``
adapters are transposed into it on reading; embedding tables keep their stored
(num_embeddings, embedding_dim) layout. Arithmetic is float64.

A :class:`Delta` carries exactly one representation of ΔW in ``matrix``:

* a float64 ``numpy.ndarray`` (dense: a full fine-tune, DoRA's effective update),
* :class:`Factors` (s·B·A of an adapter, never multiplied out unless asked), or
* a :class:`lab.sources.MatrixSource` (a matrix too large to hold in float64, read in
  blocks from the checkpoint files; only the blocked kernels of :mod:`lab.probes.blocked` touch it).

Probes ask for the representation they can use (``delta.factors``, ``delta.dense``,
``delta.streamed``); nothing else branches on types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Other PEFT types, read through PEFT as dense ΔW (lab/checkpoints/peft_general.py): peft_type lower-cased.
# Every weight-modifying type of PEFT 0.21 (tests/checkpoints/test_peft_general.py keeps the list complete).
PEFT_KINDS = ("adalora", "adamss", "beft", "boft", "c3a", "deft", "delora", "fourierft", "frod", "glora", "gralora",
              "hira", "hra", "ia3", "lily", "ln_tuning", "loha", "lokr", "miss", "oft", "osf", "peanut", "poly", "psoft",
              "pvera", "randlora", "road", "shadow", "shira", "supertuning", "tinylora", "trainable_tokens", "unilora",
              "vblora", "vera", "waveft", "xlora")
KINDS = ("lora", "full", "dora", "mps") + PEFT_KINDS
SOURCES = ("delta", "random", "random_lora")


@dataclass(frozen=True)
class Factors:
    """A matrix held as scale·B·A (B rows×r, A r×cols), never multiplied out here."""

    B: np.ndarray
    A: np.ndarray
    scale: float = 1.0

    def __post_init__(self) -> None:
        B = np.asarray(self.B, dtype=np.float64)
        A = np.asarray(self.A, dtype=np.float64)
        if B.ndim != 2 or A.ndim != 2 or B.shape[1] != A.shape[0]:
            raise ValueError(f"factors B{B.shape} and A{A.shape} do not multiply")
        object.__setattr__(self, "B", B)
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "scale", float(self.scale))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.B.shape[0], self.A.shape[1])

    @property
    def rank_bound(self) -> int:
        return int(self.B.shape[1])

    def is_finite(self) -> bool:
        return bool(np.isfinite(self.scale) and np.isfinite(self.B).all() and np.isfinite(self.A).all())

    def to_dense(self) -> np.ndarray:
        """scale·B·A as a float64 array (for tests and small matrices only)."""
        return self.scale * (self.B @ self.A)

    def fro_norm(self) -> float:
        """‖sBA‖_F from the r×r Gram matrices: ‖sBA‖_F² = s²·tr((BᵀB)(AAᵀ)), never multiplied out.

        Computed as |s|·√tr(...) with the factors rescaled by their largest entry first, so a huge
        but finite scale (or factors) overflows only when the norm itself is not representable.
        """
        b_max = float(np.abs(self.B).max(initial=0.0))
        a_max = float(np.abs(self.A).max(initial=0.0))
        if b_max == 0.0 or a_max == 0.0 or self.scale == 0.0:
            return 0.0
        Bn, An = self.B / b_max, self.A / a_max
        g = (Bn.T @ Bn) * (An @ An.T)  # elementwise: tr(XY) = Σ X∘Yᵀ, both symmetric
        with np.errstate(over="ignore"):
            return float(abs(self.scale) * b_max * a_max * np.sqrt(max(g.sum(), 0.0)))

    def rows(self, start: int, stop: int) -> Factors:
        """The factors of rows start:stop of the matrix (A is shared: (sBA)[rows] = s·B[rows]·A)."""
        return Factors(self.B[start:stop], self.A, self.scale)


@dataclass
class Delta:
    """A weight update ``ΔW`` of one module (or a control matrix standing in for one).

    ``matrix`` holds ΔW: a dense float64 array, :class:`Factors`, or a streamed
    :class:`~lab.sources.MatrixSource`. ``base`` is the module's base weight W when one
    was given (same layout; an array, or a source when W is streamed too). ``source`` says what
    the matrix is: ``delta`` for a real update, ``random``/``random_lora`` for the run's controls.
    """

    module: str  # module path without ``.weight`` and without PEFT's ``base_model.model.``
    layer: int | None
    role: str  # q, k, v, o, up, down, gate, fc_in, fc_out, embed, ..., other
    kind: str  # one of KINDS
    matrix: Any  # np.ndarray | Factors | MatrixSource
    base: Any = field(default=None, repr=False)  # np.ndarray | MatrixSource | None
    note: str = ""  # e.g. "dora: low-rank part only (no --base)"
    source: str = "delta"  # one of SOURCES
    params: int | None = None  # stored (trainable) parameters of the update, when read from a checkpoint

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown delta kind {self.kind!r}")
        if isinstance(self.matrix, np.ndarray):
            if self.matrix.ndim != 2:
                raise ValueError(f"a dense update must be 2-D, got shape {self.matrix.shape}")
        elif not isinstance(self.matrix, Factors) and not hasattr(self.matrix, "read"):
            raise ValueError(f"a Delta's matrix must be an array, Factors or a MatrixSource, got {type(self.matrix).__name__}")
        if self.base is not None and tuple(self.base.shape) != self.shape:
            raise ValueError(f"base shape {tuple(self.base.shape)} != update shape {self.shape}")

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.matrix.shape
        return (int(rows), int(cols))

    @property
    def factors(self) -> Factors | None:
        """The factors when ΔW is held as s·B·A, else None."""
        return self.matrix if isinstance(self.matrix, Factors) else None

    @property
    def dense(self) -> np.ndarray | None:
        """ΔW as an in-memory array when it is held densely, else None (never multiplies factors)."""
        return self.matrix if isinstance(self.matrix, np.ndarray) else None

    @property
    def streamed(self) -> bool:
        """Whether ΔW is read in blocks from disk (too large to hold in float64)."""
        return is_streamed(self.matrix)

    @property
    def is_factored(self) -> bool:
        return isinstance(self.matrix, Factors)

    @property
    def scale(self) -> float | None:
        """The adapter's scale s of ΔW = s·B·A (None for dense or streamed updates)."""
        return self.matrix.scale if isinstance(self.matrix, Factors) else None

    @property
    def rank_bound(self) -> int:
        """The largest rank ΔW can have: r for factors, min(rows, cols) otherwise."""
        return self.matrix.rank_bound if isinstance(self.matrix, Factors) else min(self.shape)

    def to_dense(self) -> np.ndarray:
        """ΔW as a float64 array (multiplies factors out; refuses a streamed matrix)."""
        if isinstance(self.matrix, Factors):
            return self.matrix.to_dense()
        if isinstance(self.matrix, np.ndarray):
            return self.matrix
        raise ValueError(f"{self.module}: ΔW {self.shape} is streamed from disk; use the blocked kernels")

    def fro_norm(self) -> float:
        """‖ΔW‖_F (factors: from the r×r Gram matrices). A streamed ΔW needs the blocked kernels:
        :func:`lab.probes.inventory.update_norm` handles every representation."""
        if isinstance(self.matrix, Factors):
            return self.matrix.fro_norm()
        if isinstance(self.matrix, np.ndarray):
            # Σx² of entries near 1e300 overflows (near 1e-300 underflows): such a matrix is scaled by
            # its largest entry first; ordinary ones are not touched
            top = float(np.abs(self.matrix).max(initial=0.0))
            if np.isfinite(top) and top > 0.0 and not 1e-100 <= top <= 1e100:
                with np.errstate(over="ignore"):
                    return float(top * np.linalg.norm(self.matrix / top))
            return float(np.linalg.norm(self.matrix))
        raise ValueError(f"{self.module}: ΔW {self.shape} is streamed from disk; use lab.probes.inventory.update_norm")


def is_streamed(x: Any) -> bool:
    """Whether ``x`` is a streamed matrix source (neither an array nor factors nor a tuple of them)."""
    return hasattr(x, "read") and not isinstance(x, (np.ndarray, Factors))
