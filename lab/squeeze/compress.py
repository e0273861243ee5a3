"""Squeezing each module: the truncated SVD of its update and the errors of what is kept.

Adapters (factored updates) use the exact SVD from the factors. Full fine-tunes (dense ΔW) use the
seeded randomized SVD; where ΔW has at most ``exact_limit`` entries the exact truncated SVD
(LAPACK's) is computed too and its error reported beside, so the randomized one can be judged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from lab.deltas import Factors
from lab.errors import InputError
from lab.kernels.merging import errors as factored_errors
from lab.squeeze import svd
from lab.squeeze.targets import Target

EXACT_LIMIT = 4096 * 4096  # dense ΔW up to this many entries also get LAPACK's exact SVD


@dataclass
class Squeezed:
    """One module squeezed: the kept factors (scale 1) and the numbers of the ``squeeze`` table."""

    module: str
    target: Target
    merged: Factors  # the name lab.merge's adapter writer reads
    method: str  # exact (from factors or LAPACK) or randomized
    energy_target: float | None
    kept_energy: float
    rel_fro_error: float
    optimal_rel_fro_error: float | None
    rel_spectral_error: float
    seconds: float

    @property
    def embedding(self) -> bool:
        return self.target.embedding

    @property
    def k(self) -> int:
        return self.merged.rank_bound


def squeeze_target(t: Target, rank: int | None, energy: float | None, *, seed: int = 0, power_iters: int = 4,
                   oversample: int = 10, exact_limit: int = EXACT_LIMIT) -> Squeezed:
    """The rank-``rank`` (or ``energy``-keeping) truncation of one module's update."""
    start = time.perf_counter()
    if isinstance(t.update, Factors):
        U, s, Vt = svd.factored_svd(t.update)
        k = rank if rank is not None else svd.energy_rank(s, energy)
        _check_rank(t, k)
        kept = svd.split(U, s, Vt, k)
        e = factored_errors(kept, t.update)
        return Squeezed(t.module, t, kept, "exact", energy, svd.kept_energy(s, k), e.rel_fro, e.optimal_rel_fro,
                        e.rel_spectral, time.perf_counter() - start)
    M = t.update
    small = M.size <= exact_limit
    if rank is None:
        if not small:
            raise InputError(f"{t.module}: ΔW {M.shape} is too large for the exact SVD an --energy target needs; pass --rank k")
        U, s, Vt = np.linalg.svd(M, full_matrices=False)
        k = svd.energy_rank(s, energy)
        kept, method = svd.split(U, s, Vt, k), "exact"
    else:
        k = rank
        _check_rank(t, k)
        U, s, Vt = svd.randomized_svd(M, k, oversample=oversample, power_iters=power_iters, seed=seed)
        kept, method = svd.split(U, s, Vt, k), "randomized"
    seconds = time.perf_counter() - start
    total = float(np.linalg.norm(M))
    diff = M - kept.to_dense()
    rel = float(np.linalg.norm(diff)) / total
    full_s = np.linalg.svd(M, compute_uv=False) if small else None
    optimal = float(np.sqrt((full_s[k:] ** 2).sum())) / total if full_s is not None else None
    spectral = float(np.linalg.norm(diff, 2)) / float(full_s[0]) if full_s is not None else float("nan")
    kept_e = float(np.linalg.norm(kept.to_dense()) ** 2) / total ** 2 if method == "randomized" else svd.kept_energy(s, k)
    return Squeezed(t.module, t, kept, method, energy, kept_e, rel, optimal, spectral, seconds)


def _check_rank(t: Target, k: int) -> None:
    if not 1 <= k <= t.rank_in:
        raise InputError(f"{t.module}: --rank {k} must be between 1 and the update's rank bound {t.rank_in} ({t.kind}, ΔW {t.update.shape[0]}×{t.update.shape[1]})")
