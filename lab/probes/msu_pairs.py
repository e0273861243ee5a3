"""Several adapters of one base, per module: concatenation = summation, and the cross terms of
index-wise averaging (group scope: the same module across the run's adapters).

For adapters j = 1 … J of one module with updates s_j·B_j·A_j (FLoRA, Wang et al. 2024,
arXiv 2409.05976; LoRA-LEGO, Zhao et al. 2024, arXiv 2409.16167):

* ``concat_sum_error`` = ‖[B_1 … B_J]·[s_1 A_1; …; s_J A_J] − Σ_j s_j B_j A_j‖_F / ‖Σ_j s_j B_j A_j‖_F:
  zero in exact arithmetic for any ranks and scales (the units of all adapters form one set);
  what is left is rounding. Computed by :func:`lab.kernels.norms.difference_norms`, never densely.
* ``cross_term_error`` = ‖B̃·Ã − T‖_F / ‖T‖_F with T = (1/J)·Σ_j s_j B_j A_j the exact mean and
  (B̃, Ã) PEFT's "linear" index-wise average with weights 1/J (:func:`lab.kernels.merging.linear`):
  B̃·Ã − T = (1/J)·Σ_{j≠k} √(s_j s_k)·B_j A_k, FLoRA's aggregation noise. Equal ranks only.
* the same error after a seeded random permutation of each adapter's ranks (B_j P_j, P_jᵀ A_j,
  which leaves every update unchanged): mean, min and max over the permutations. The spread is
  the point: index-wise averaging pairs unit i of one adapter with unit i of another, an order
  that training never fixed.
* ``fedavg_error``: the same for FedAvg's index-wise mean B̄ = (1/J)·Σ B_j, Ā = (1/J)·Σ s_j A_j
  (:func:`lab.kernels.merging.fedavg`), with its spread over the same permutations. The two rules
  differ: PEFT's square-root weights give (Σ_j √w_j)² = J times the update for J identical
  adapters (error J − 1), FedAvg gives it exactly; for independent adapters both carry cross terms.

A module that only some of the run's adapters have is compared across those (``members`` says
which); the engine plans a group only where at least two have it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.deltas import Factors
from lab.kernels.merging import fedavg, linear, stack
from lab.kernels.norms import difference_norms
from lab.probes.registry import Probe, ProbeContext, Rows, field_help, register


@dataclass(frozen=True)
class MsuPairsOptions:
    """Options of the msu_pairs probe."""

    permutations: int = field_help("seeded random rank permutations of every adapter for the cross-term spread", default=16)

    def __post_init__(self) -> None:
        if self.permutations < 1:
            raise ValueError("permutations must be at least 1")


def concat_sum_error(factors: list[Factors]) -> float:
    """‖stacked product − Σ_j s_j B_j A_j‖_F / ‖Σ_j s_j B_j A_j‖_F (rounding only)."""
    S = stack(factors, [1.0] * len(factors))
    left = [S.B] + [-f.scale * f.B for f in factors]
    right = [S.A] + [f.A for f in factors]
    diff, _ = difference_norms(left, right)
    total, _ = difference_norms([S.B], [S.A])
    return diff / total if total > 0 else diff


def cross_term_error(factors: list[Factors], rule: str = "linear") -> float:
    """‖index-wise average − exact mean‖_F / ‖exact mean‖_F (equal ranks): PEFT's ``linear`` rule or ``fedavg``."""
    w = [1.0 / len(factors)] * len(factors)
    M, T = (linear(factors, w) if rule == "linear" else fedavg(factors)), stack(factors, w)
    diff, _ = difference_norms([M.B, -T.B], [M.A, T.A])
    total, _ = difference_norms([T.B], [T.A])
    return diff / total if total > 0 else diff


def permuted_cross_term_errors(factors: list[Factors], permutations: int, seed: int = 0, rule: str = "linear") -> np.ndarray:
    """The cross-term error (``rule``: linear or fedavg) after independent seeded rank permutations of every adapter."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(permutations):
        permuted = []
        for f in factors:
            p = rng.permutation(f.rank_bound)
            permuted.append(Factors(f.B[:, p], f.A[p], f.scale))
        out.append(cross_term_error(permuted, rule))
    return np.array(out)


def _run(subject, options: MsuPairsOptions, ctx: ProbeContext) -> Rows:
    factors = [d.factors for d in subject.deltas]
    row = dict.fromkeys(_COLUMNS)
    row.update(members=",".join(subject.members), n_members=len(subject.deltas),
               ranks=",".join(str(d.rank_bound) if d.factors is not None else "kron" if d.kron is not None else "dense"
                              for d in subject.deltas),
               scales=",".join(f"{d.scale:.6g}" if d.scale is not None else "" for d in subject.deltas), note="")
    if any(f is None for f in factors):
        row["note"] = ("some members are not s·B·A factors (full fine-tune, DoRA read with --base, LoKr's Kronecker "
                       "product, a dense PEFT update): no units to stack or average")
        return {"msu_pairs": [row]}
    S = stack(factors, [1.0 / len(factors)] * len(factors))
    row.update(mean_fro_norm=difference_norms([S.B], [S.A])[0], concat_sum_error=concat_sum_error(factors))
    if len({f.rank_bound for f in factors}) > 1:
        row["note"] = "ranks differ (heterogeneous, as in FLoRA): index-wise averaging is undefined"
        return {"msu_pairs": [row]}
    perm = permuted_cross_term_errors(factors, options.permutations, ctx.seed)
    row.update(cross_term_error=cross_term_error(factors), permutations=options.permutations,
               cross_term_error_mean=float(perm.mean()), cross_term_error_min=float(perm.min()),
               cross_term_error_max=float(perm.max()))
    fed = permuted_cross_term_errors(factors, options.permutations, ctx.seed, "fedavg")  # the same permutations
    row.update(fedavg_error=cross_term_error(factors, "fedavg"), fedavg_error_mean=float(fed.mean()),
               fedavg_error_min=float(fed.min()), fedavg_error_max=float(fed.max()))
    return {"msu_pairs": [row]}


_COLUMNS = ("members", "n_members", "ranks", "scales", "mean_fro_norm", "concat_sum_error", "cross_term_error",
            "permutations", "cross_term_error_mean", "cross_term_error_min", "cross_term_error_max",
            "fedavg_error", "fedavg_error_mean", "fedavg_error_min", "fedavg_error_max", "note")

register(Probe(
    name="msu_pairs",
    tables=("msu_pairs",),
    run=_run,
    scope="group",
    options=MsuPairsOptions,
    default=False,
    description="several adapters of one base, per module: concatenation = summation, and the cross terms of "
                "index-wise (PEFT linear / FedAvg) averaging with their spread over rank permutations",
))
