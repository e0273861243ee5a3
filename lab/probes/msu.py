"""Minimal semantic units (MSUs) of one adapter: per-unit contributions, energy shares, similarity,
and the permutation invariance of ΔW = s·B·A, all from the factors (ΔW is never multiplied out).

LoRA-LEGO (Zhao et al. 2024, "Merging LoRAs like Playing LEGO", arXiv 2409.16167) reads rank i of
a LoRA, column b_i of B with row a_i of A, as one unit: ΔW = Σ_i U_i with U_i = s·b_i·a_iᵀ.

* **Permutation invariance.** For a permutation matrix P, (B·P)(Pᵀ·A) = B·A: the units are a set,
  not a sequence. The error ‖s·B·A − s·(B P)(Pᵀ A)‖_F / ‖s·B·A‖_F is measured for seeded random
  permutations by :func:`difference_norms` (exactly zero in exact arithmetic; rounding only).
* **Contribution** of unit i: c_i = |s|·‖b_i‖·‖a_i‖ = ‖U_i‖_F.
* **Energy shares.** The units are not orthogonal, so ‖ΔW‖²_F ≠ Σ c_i². With the Hadamard Gram
  G = s²·(BᵀB)∘(AAᵀ) (G_ij = ⟨U_i, U_j⟩_F, ‖ΔW‖²_F = Σ_ij G_ij):

  - ``own_share_i``    = c_i² / Σ_j c_j²  (a distribution: what each unit holds on its own);
  - ``energy_share_i`` = Σ_j G_ij / ‖ΔW‖²_F = ⟨U_i, ΔW⟩_F / ‖ΔW‖²_F  (the Gram-weighted share: the
    unit's projection on the whole update; the shares sum to 1 and one is negative when its unit
    opposes the others);
  - ``cross_energy`` = (‖ΔW‖²_F − Σ c_i²) / ‖ΔW‖²_F, the part of the energy in cross terms
    (0 for orthogonal units).
* **Effective number of units**: exp(H(own_share)), H the Shannon entropy (1 … r); the Gram-
  weighted shares can be negative, so they have no entropy.
* **Similarity**: |cos| between the a_i's (rows of A) and between the b_i's (columns of B), max
  and mean over the r(r−1)/2 pairs.

Example::

    >>> import numpy as np
    >>> from lab.deltas import Factors
    >>> u = units(Factors(np.eye(3)[:, :2], np.eye(2, 4), 2.0))
    >>> u.contribution.tolist(), round(u.effective_units, 6)
    ([2.0, 2.0], 2.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.deltas import Delta, Factors
from lab.kernels.norms import difference_norms
from lab.kernels.spectrum import entropies
from lab.probes.registry import Probe, ProbeContext, Rows, field_help, register

NOTE_DENSE_DORA = "dora: the effective update is dense (read with --base); MSUs need the low-rank factors: analyse without --base"


@dataclass(frozen=True)
class MsuOptions:
    """Options of the msu probe."""

    permutations: int = field_help("seeded random permutations of the ranks tried for the invariance check", default=8)
    units: bool = field_help("also write one msu_units row per unit (contribution, shares, norms)", default=True)

    def __post_init__(self) -> None:
        if self.permutations < 1:
            raise ValueError("permutations must be at least 1")


@dataclass(frozen=True)
class Units:
    """The MSUs of s·B·A and the numbers read from their Hadamard Gram."""

    b_norm: np.ndarray  # ‖b_i‖
    a_norm: np.ndarray  # ‖a_i‖
    contribution: np.ndarray  # c_i = |s|·‖b_i‖·‖a_i‖
    own_share: np.ndarray  # c_i² / Σ c²
    energy_share: np.ndarray  # ⟨U_i, ΔW⟩ / ‖ΔW‖²
    fro_norm: float  # ‖ΔW‖_F
    cross_energy: float  # (‖ΔW‖² − Σ c²) / ‖ΔW‖²
    effective_units: float  # exp H(own_share)
    cos_a_max: float
    cos_a_mean: float
    cos_b_max: float
    cos_b_mean: float


def _cosines(vectors: np.ndarray) -> tuple[float, float]:
    """Max and mean |cos| over distinct pairs of the rows of ``vectors`` (zero rows left out)."""
    norms = np.linalg.norm(vectors, axis=1)
    v = vectors[norms > 0] / norms[norms > 0, None]
    if v.shape[0] < 2:
        return float("nan"), float("nan")
    c = np.abs(v @ v.T)[np.triu_indices(v.shape[0], 1)]
    return float(c.max()), float(c.mean())


def units(f: Factors) -> Units:
    """Contributions, shares and similarities of the units of ``f`` (cost O(r²·(rows + cols)))."""
    b_norm = np.linalg.norm(f.B, axis=0)
    a_norm = np.linalg.norm(f.A, axis=1)
    contribution = abs(f.scale) * b_norm * a_norm
    # G_ij = ⟨U_i, U_j⟩_F = s²·(b_iᵀb_j)(a_iᵀa_j): the units' Gram, never the m×n units themselves
    G = f.scale ** 2 * (f.B.T @ f.B) * (f.A @ f.A.T)
    total = float(G.sum())
    own = float((contribution ** 2).sum())
    own_share = contribution ** 2 / own if own > 0 else np.full(contribution.shape, np.nan)
    energy_share = G.sum(axis=1) / total if total > 0 else np.full(contribution.shape, np.nan)
    effective = float(np.exp(entropies(own_share)[0])) if own > 0 else float("nan")
    cos_a = _cosines(f.A)
    cos_b = _cosines(f.B.T)
    return Units(b_norm, a_norm, contribution, own_share, energy_share, float(np.sqrt(max(total, 0.0))),
                 (total - own) / total if total > 0 else float("nan"), effective, *cos_a, *cos_b)


def permutation_errors(f: Factors, permutations: int, seed: int = 0) -> np.ndarray:
    """‖s·B·A − s·(B P)(Pᵀ A)‖_F / ‖s·B·A‖_F for ``permutations`` seeded random permutations P."""
    rng = np.random.default_rng(seed)
    norm = f.fro_norm()
    out = []
    for _ in range(permutations):
        p = rng.permutation(f.rank_bound)
        diff, _ = difference_norms([f.scale * f.B, -f.scale * f.B[:, p]], [f.A, f.A[p]])
        out.append(diff / norm if norm > 0 else diff)
    return np.array(out)


def _run(delta: Delta, options: MsuOptions, ctx: ProbeContext) -> Rows:
    f = delta.factors
    if f is None:
        if delta.kind != "dora":
            return {"msu": [], "msu_units": [], "msu_similarity": []}  # a full fine-tune has no units
        row = dict.fromkeys(_SUMMARY)
        row.update(rows=delta.shape[0], cols=delta.shape[1], note=NOTE_DENSE_DORA)
        return {"msu": [row], "msu_units": [], "msu_similarity": []}
    u = units(f)
    perm = permutation_errors(f, options.permutations, ctx.seed)
    row = {
        "rows": f.shape[0], "cols": f.shape[1], "rank": f.rank_bound, "scale": f.scale, "fro_norm": u.fro_norm,
        "contribution_sum": float(u.contribution.sum()), "contribution_max": float(u.contribution.max(initial=0.0)),
        "cross_energy": u.cross_energy, "effective_units": u.effective_units,
        "effective_units_ratio": u.effective_units / f.rank_bound,
        "cos_a_max": u.cos_a_max, "cos_a_mean": u.cos_a_mean, "cos_b_max": u.cos_b_max, "cos_b_mean": u.cos_b_mean,
        "permutations": options.permutations, "permutation_error_max": float(perm.max()),
        "permutation_error_mean": float(perm.mean()), "note": delta.note,
    }
    unit_rows = []
    if options.units:
        order = np.argsort(-u.contribution, kind="stable")
        position = np.empty_like(order)
        position[order] = np.arange(1, order.size + 1)
        unit_rows = [
            {"unit": i, "order": int(position[i]), "contribution": float(u.contribution[i]), "b_norm": float(u.b_norm[i]),
             "a_norm": float(u.a_norm[i]), "own_share": float(u.own_share[i]), "energy_share": float(u.energy_share[i])}
            for i in range(f.rank_bound)
        ]
    return {"msu": [row], "msu_units": unit_rows, "msu_similarity": similarity_rows(f) if options.units else []}


def _signed_cosines(vectors: np.ndarray) -> np.ndarray:
    """cos between every two rows of ``vectors`` (NaN where a row is zero)."""
    norms = np.linalg.norm(vectors, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = vectors / norms[:, None]
    return v @ v.T


def similarity_rows(f: Factors) -> list[dict]:
    """``msu_similarity`` rows: cos(a_i, a_j) and cos(b_i, b_j) for every pair of units i < j."""
    ca, cb = _signed_cosines(f.A), _signed_cosines(f.B.T)
    i, j = np.triu_indices(f.rank_bound, 1)
    return [{"unit_i": int(a), "unit_j": int(b), "cos_a": float(ca[a, b]), "cos_b": float(cb[a, b])} for a, b in zip(i, j)]


_SUMMARY = ("rows", "cols", "rank", "scale", "fro_norm", "contribution_sum", "contribution_max", "cross_energy",
            "effective_units", "effective_units_ratio", "cos_a_max", "cos_a_mean", "cos_b_max", "cos_b_mean",
            "permutations", "permutation_error_max", "permutation_error_mean", "note")

register(Probe(
    name="msu",
    tables=("msu", "msu_units", "msu_similarity"),
    run=_run,
    options=MsuOptions,
    default=False,
    description="LoRA-LEGO minimal semantic units of each adapter: contributions, Gram-weighted energy shares, "
                "similarity, permutation invariance",
))
