"""One module's weight update, held one way: a dense array, factors, or a streamed source.

Convention: every matrix is (out_features, in_features), the layout of
``torch.nn.Linear.weight``. GPT-2 ``Conv1D`` weights and PEFT ``fan_in_fan_out``
adapters are transposed into it on reading; embedding tables keep their stored
(num_embeddings, embedding_dim) layout. Arithmetic is float64.

A :class:`Delta` carries exactly one representation of ΔW in ``matrix``:

* a float64 ``numpy.ndarray`` (dense: a full fine-tune, DoRA's effective update),
* :class:`Factors` (s·B·A of an adapter, never multiplied out unless asked),
* :class:`Kron` (s·kron(W1, W2) of a LoKr adapter, W1 and W2 each dense or :class:`Factors`;
  the probes use the two small factors where the structure gives the answer, see
  :mod:`lab.kernels.kron`), or
* a :class:`lab.sources.MatrixSource` (a matrix too large to hold in float64, read in
  blocks from the checkpoint files; only the blocked kernels of :mod:`lab.kernels.blocked` touch it).

Probes ask for the representation they can use (``delta.factors``, ``delta.kron``, ``delta.dense``,
``delta.streamed``); nothing else branches on types.
"""

from __future__ import annotations

import math
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
        """r, or min(rows, cols) when r exceeds it (PEFT allows r above the matrix's dimensions)."""
        return int(min(self.B.shape[1], self.B.shape[0], self.A.shape[1]))

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


@dataclass(frozen=True)
class Kron:
    """A matrix held as scale·kron(W1, W2) (LoKr), W1 (a×b) and W2 (c×d) each a dense float64 array or
    :class:`Factors`; the matrix is (a·c)×(b·d) with entries W1[i1, j1]·W2[i2, j2] at (i1·c + i2, j1·d + j2).

    Never multiplied out here unless asked (:meth:`to_dense`). rank(kron(W1, W2)) = rank(W1)·rank(W2)
    and its singular values are the products σ(W1)_i·σ(W2)_j, so the structure bounds the rank
    exactly as the factors do.
    """

    W1: Any  # np.ndarray | Factors
    W2: Any  # np.ndarray | Factors
    scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("W1", "W2"):
            w = getattr(self, name)
            if not isinstance(w, Factors):
                w = np.asarray(w, dtype=np.float64)
                if w.ndim != 2:
                    raise ValueError(f"Kronecker factor {name} must be 2-D, got shape {w.shape}")
                object.__setattr__(self, name, w)
        object.__setattr__(self, "scale", float(self.scale))

    @property
    def shape(self) -> tuple[int, int]:
        (a, b), (c, d) = self.W1.shape, self.W2.shape
        return (int(a) * int(c), int(b) * int(d))

    @staticmethod
    def _bound(w) -> int:
        return min(w.rank_bound, *w.shape) if isinstance(w, Factors) else min(w.shape)

    @property
    def rank_bound(self) -> int:
        """rank(W1)·rank(W2) at most: each factor's r (capped by its shape) or min(its shape) when dense."""
        return self._bound(self.W1) * self._bound(self.W2)

    @property
    def params(self) -> int:
        """Stored numbers of the two factors (each dense, or its B and A)."""
        return sum(int(w.B.size + w.A.size) if isinstance(w, Factors) else int(w.size) for w in (self.W1, self.W2))

    def is_finite(self) -> bool:
        return bool(np.isfinite(self.scale) and all(
            w.is_finite() if isinstance(w, Factors) else np.isfinite(w).all() for w in (self.W1, self.W2)))

    def factor_dense(self, which: int) -> np.ndarray:
        """W1 (``which`` = 1) or W2 (2) as a float64 array."""
        w = self.W1 if which == 1 else self.W2
        return w.to_dense() if isinstance(w, Factors) else w

    def to_dense(self) -> np.ndarray:
        """scale·kron(W1, W2) as a float64 array (for tests and small matrices only)."""
        return self.scale * np.kron(self.factor_dense(1), self.factor_dense(2))

    def fro_norm(self) -> float:
        """‖s·kron(W1, W2)‖_F = |s|·‖W1‖_F·‖W2‖_F, multiplied as mantissas and exponents, so a product
        of a huge and a tiny norm overflows only when the result itself is not representable."""
        norms = [abs(self.scale)] + [w.fro_norm() if isinstance(w, Factors) else dense_fro_norm(w) for w in (self.W1, self.W2)]
        if not all(np.isfinite(norms)):
            return float("nan") if any(np.isnan(norms)) else float("inf")
        if 0.0 in norms:
            return 0.0
        mantissa, exponent = 1.0, 0
        for x in norms:
            m, e = math.frexp(x)
            mantissa, exponent = mantissa * m, exponent + e
        try:
            return math.ldexp(mantissa, exponent)
        except OverflowError:
            return float("inf")

    def rows(self, start: int, stop: int) -> Kron | np.ndarray:
        """Rows start:stop: a Kron of W1's rows start/c:stop/c when both ends are multiples of c (W2's
        row count), else that block of the dense matrix (a fused projection cut across W2's blocks)."""
        c = int(self.W2.shape[0])
        if start % c == 0 and stop % c == 0 and stop > start:
            w1 = self.W1.rows(start // c, stop // c) if isinstance(self.W1, Factors) else self.W1[start // c : stop // c]
            return Kron(w1, self.W2, self.scale)
        return np.ascontiguousarray(self.to_dense()[start:stop])


def dense_fro_norm(m: np.ndarray) -> float:
    """‖m‖_F of an array; entries near 1e±300 are scaled by the largest first (Σx² would overflow or underflow)."""
    top = float(np.abs(m).max(initial=0.0))
    if np.isfinite(top) and top > 0.0 and not 1e-100 <= top <= 1e100:
        with np.errstate(over="ignore"):
            return float(top * np.linalg.norm(m / top))
    return float(np.linalg.norm(m))


@dataclass
class Delta:
    """A weight update ``ΔW`` of one module (or a control matrix standing in for one).

    ``matrix`` holds ΔW: a dense float64 array, :class:`Factors`, :class:`Kron`, or a streamed
    :class:`~lab.sources.MatrixSource`. ``base`` is the module's base weight W when one
    was given (same layout; an array, or a source when W is streamed too). ``source`` says what
    the matrix is: ``delta`` for a real update, ``random``/``random_lora`` for the run's controls.
    """

    module: str  # module path without ``.weight`` and without PEFT's ``base_model.model.``
    layer: int | None
    role: str  # q, k, v, o, up, down, gate, fc_in, fc_out, embed, ..., other
    kind: str  # one of KINDS
    matrix: Any  # np.ndarray | Factors | Kron | MatrixSource
    base: Any = field(default=None, repr=False)  # np.ndarray | MatrixSource | None
    note: str = ""  # e.g. "dora: low-rank part only (no --base)"
    source: str = "delta"  # one of SOURCES
    params: int | None = None  # stored (trainable) parameters of the update, when read from a checkpoint
    pruned_ranks: int | None = None  # AdaLoRA: ranks of the module its budget pruned (λ = 0 or not saved)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown delta kind {self.kind!r}")
        if isinstance(self.matrix, np.ndarray):
            if self.matrix.ndim != 2:
                raise ValueError(f"a dense update must be 2-D, got shape {self.matrix.shape}")
        elif not isinstance(self.matrix, (Factors, Kron)) and not hasattr(self.matrix, "read"):
            raise ValueError(f"a Delta's matrix must be an array, Factors, Kron or a MatrixSource, got {type(self.matrix).__name__}")
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
    def kron(self) -> Kron | None:
        """The Kronecker form when ΔW is held as s·kron(W1, W2) (LoKr), else None."""
        return self.matrix if isinstance(self.matrix, Kron) else None

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
        """Whether ΔW is held in a structured form, never multiplied out: factors or a Kronecker product."""
        return isinstance(self.matrix, (Factors, Kron))

    @property
    def scale(self) -> float | None:
        """The adapter's scale s of ΔW = s·B·A or s·kron(W1, W2) (None for dense or streamed updates)."""
        return self.matrix.scale if isinstance(self.matrix, (Factors, Kron)) else None

    @property
    def rank_bound(self) -> int:
        """The largest rank ΔW can have: r for factors, rank(W1)·rank(W2) for a Kronecker product
        (structural: the factors' bounds), min(rows, cols) otherwise."""
        return self.matrix.rank_bound if isinstance(self.matrix, (Factors, Kron)) else min(self.shape)

    def to_dense(self) -> np.ndarray:
        """ΔW as a float64 array (multiplies factors out; refuses a streamed matrix)."""
        if isinstance(self.matrix, (Factors, Kron)):
            return self.matrix.to_dense()
        if isinstance(self.matrix, np.ndarray):
            return self.matrix
        raise ValueError(f"{self.module}: ΔW {self.shape} is streamed from disk; use the blocked kernels")

    def fro_norm(self) -> float:
        """‖ΔW‖_F (factors: from the r×r Gram matrices; Kronecker: the product of the factors' norms).
        A streamed ΔW needs the blocked kernels: :func:`lab.kernels.norms.update_norm` handles every
        representation."""
        if isinstance(self.matrix, (Factors, Kron)):
            return self.matrix.fro_norm()
        if isinstance(self.matrix, np.ndarray):
            return dense_fro_norm(self.matrix)
        raise ValueError(f"{self.module}: ΔW {self.shape} is streamed from disk; use lab.probes.inventory.update_norm")


def is_streamed(x: Any) -> bool:
    """Whether ``x`` is a streamed matrix source (neither an array nor factors nor a tuple of them)."""
    return hasattr(x, "read") and not isinstance(x, (np.ndarray, Factors, Kron))
