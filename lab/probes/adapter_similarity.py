"""The geometry between updates of one module across adapters or checkpoints (group scope).

For every pair (a, b) of the group's members, in run order:

* the LoRA paper's normalised subspace similarity (Hu et al. 2021, "LoRA: Low-Rank Adaptation of
  Large Language Models"; the formula as issue 25 states it, not checked here against the paper's text): φ(i, j) = ‖U_a,iᵀ U_b,j‖²_F / min(i, j) ∈ [0, 1], U_a,i the top-i
  left singular vectors of ΔW_a, for i, j ∈ {1, 2, 4, …} up to the rank (and the rank itself); the
  same for the right singular vectors;
* the principal angles θ_1 … θ_k between the top-k subspaces (cos θ = singular values of U_aᵀU_b,
  Björck & Golub 1973) and the Grassmann distance √Σθ²;
* the cosine between the updates as vectors, ⟨ΔW_a, ΔW_b⟩_F / (‖ΔW_a‖_F ‖ΔW_b‖_F), for factors
  s_a s_b·Σ (B_aᵀB_b) ∘ (A_a A_bᵀ) (r_a × r_b matrices, never multiplied out);
* the sign-conflict rate (the disagreement TIES-merging resolves by electing a sign per entry; defined
  here as: among the entries where both updates are nonzero, the fraction whose signs differ); dense
  rows are built a block at a time.

Singular vectors come from :func:`lab.kernels.subspaces.top_singular_vectors` (exact QR + r×r SVD
for factors), without a dense update's rounding-level directions. A streamed update is not compared (its pair gets a note).

Example::

    >>> import numpy as np
    >>> from lab.deltas import Factors
    >>> rng = np.random.default_rng(0)
    >>> f = Factors(rng.standard_normal((20, 2)), rng.standard_normal((2, 10)), 1.0)
    >>> round(update_cosine(f, f.to_dense()), 12), round(float(phi(f, f, "left")[(2, 2)]), 12)
    (1.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from lab.deltas import Delta, Kron, is_streamed
from lab.kernels import subspaces
from lab.kernels.factored import Factors, as_matrix_or_factors
from lab.probes.registry import Probe, ProbeContext, Rows, field_help, register


@dataclass(frozen=True)
class AdapterSimilarityOptions:
    """Options of the adapter_similarity probe."""

    top_k: int = field_help("dimension k of the subspaces whose principal angles and Grassmann distance are reported", default=8)
    max_dim: int = field_help("largest i, j of the φ(i, j) grid (a dense update's rank can be its full size)", default=64)
    block_rows: int = field_help("rows of the dense updates built at a time for the sign-conflict rate", default=1024)

    def __post_init__(self) -> None:
        if min(self.top_k, self.max_dim, self.block_rows) < 1:
            raise ValueError("top_k, max_dim and block_rows must be at least 1")


def _m(x):
    x = x.matrix if isinstance(x, Delta) else x
    x = as_matrix_or_factors(x)
    return x.to_dense() if isinstance(x, Kron) else x


def update_inner(x, y) -> float:
    """⟨X, Y⟩_F for dense arrays or Factors (factors never multiplied out)."""
    x, y = _m(x), _m(y)
    if isinstance(x, Factors) and isinstance(y, Factors):
        return float(x.scale * y.scale * np.sum((x.B.T @ y.B) * (x.A @ y.A.T)))
    if isinstance(y, Factors):
        x, y = y, x
    if isinstance(x, Factors):
        return float(x.scale * np.sum((x.B.T @ np.asarray(y, dtype=np.float64)) * x.A))
    return float(np.sum(np.asarray(x, dtype=np.float64) * np.asarray(y, dtype=np.float64)))


def update_cosine(x, y) -> float:
    """⟨X, Y⟩_F / (‖X‖_F ‖Y‖_F); NaN when either is zero."""
    nx, ny = update_inner(x, x), update_inner(y, y)
    return float(update_inner(x, y) / np.sqrt(nx * ny)) if nx > 0 and ny > 0 else float("nan")


def dims(rank: int, max_dim: int) -> list[int]:
    """1, 2, 4, … below min(rank, max_dim), then min(rank, max_dim) itself."""
    top = min(int(rank), int(max_dim))
    out = [d for d in (2 ** p for p in range(top.bit_length())) if d < top]
    return out + [top] if top >= 1 else []


def _vectors(x, side: str, k: int) -> np.ndarray:
    """The top k singular vectors on ``side`` above rounding: a dense update's directions come from its Gram
    matrix, whose rounding is (√big + small)·ε·σ₁² (the floor lab.kernels.blocked applies to streamed spectra);
    directions with σ² below it are not part of its subspace."""
    x = _m(x)
    u, s, v = subspaces.top_singular_vectors(x, k)
    big, small = max(x.shape), min(x.shape)
    keep = s ** 2 > (s[0] ** 2 * (np.sqrt(big) + small) * np.finfo(np.float64).eps if s.size else 0.0)
    return (u if side == "left" else v)[:, keep]


def phi(x, y, side: str, max_dim: int = 64) -> dict[tuple[int, int], float]:
    """φ(i, j) = ‖U_x,iᵀ U_y,j‖²_F / min(i, j) over the grid of :func:`dims` (``side``: left or right vectors)."""
    ux, uy = _vectors(x, side, max_dim), _vectors(y, side, max_dim)
    g = (ux.T @ uy) ** 2
    return {(i, j): float(g[:i, :j].sum() / min(i, j)) for i in dims(ux.shape[1], max_dim) for j in dims(uy.shape[1], max_dim)}


def principal_angles(x, y, side: str, k: int) -> np.ndarray:
    """θ_1 ≤ … ≤ θ_k (radians) between the top-k ``side`` singular subspaces (k cut to both ranks)."""
    ux, uy = _vectors(x, side, k), _vectors(y, side, k)
    kk = min(ux.shape[1], uy.shape[1])
    if kk == 0:
        return np.zeros(0)
    cos = np.linalg.svd(ux[:, :kk].T @ uy[:, :kk], compute_uv=False)
    return np.arccos(np.clip(cos, 0.0, 1.0))


def _rows_of(x, start: int, stop: int) -> np.ndarray:
    if isinstance(x, Factors):
        return x.scale * (x.B[start:stop] @ x.A)
    return np.asarray(x[start:stop], dtype=np.float64)


def sign_conflict_rate(x, y, block_rows: int = 1024) -> float:
    """Among entries where both updates are nonzero, the fraction with opposite signs (NaN when there are none)."""
    x, y = _m(x), _m(y)
    both = conflicts = 0
    for start in range(0, x.shape[0], block_rows):
        bx, by = _rows_of(x, start, start + block_rows), _rows_of(y, start, start + block_rows)
        sx, sy = np.sign(bx), np.sign(by)
        nz = (sx != 0) & (sy != 0)
        both += int(nz.sum())
        conflicts += int((nz & (sx != sy)).sum())
    return conflicts / both if both else float("nan")


def _run(subject, options: AdapterSimilarityOptions, ctx: ProbeContext) -> Rows:
    pairs, grid = [], []
    for (na, da), (nb, db) in combinations(zip(subject.members, subject.deltas), 2):
        row = {"first": na, "second": nb, "top_k": None, "cosine": None, "sign_conflict": None, "grassmann_left": None,
               "grassmann_right": None, "min_angle_left": None, "min_angle_right": None, "note": ""}
        if is_streamed(da.matrix) or is_streamed(db.matrix) or da.shape != db.shape:
            row["note"] = "a streamed update, or shapes differ: not compared"
            pairs.append(row)
            continue
        left = principal_angles(da, db, "left", options.top_k)
        right = principal_angles(da, db, "right", options.top_k)
        row.update(top_k=int(left.size), cosine=update_cosine(da, db),
                   sign_conflict=sign_conflict_rate(da, db, options.block_rows),
                   grassmann_left=float(np.sqrt(np.sum(left ** 2))), grassmann_right=float(np.sqrt(np.sum(right ** 2))),
                   min_angle_left=float(left[0]) if left.size else None, min_angle_right=float(right[0]) if right.size else None)
        pairs.append(row)
        for side in ("left", "right"):
            grid.extend({"first": na, "second": nb, "side": side, "i": i, "j": j, "phi": v}
                        for (i, j), v in phi(da, db, side, options.max_dim).items())
    return {"adapter_similarity": pairs, "subspace_similarity": grid}


register(Probe(
    name="adapter_similarity",
    tables=("adapter_similarity", "subspace_similarity"),
    run=_run,
    scope="group",
    options=AdapterSimilarityOptions,
    default=False,
    description="the same module across adapters or checkpoints, per pair: LoRA's subspace similarity φ(i, j), principal angles "
                "and Grassmann distance, the cosine between the updates (from the factors), TIES sign conflicts",
))
