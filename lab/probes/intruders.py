"""Intruder dimensions over a sweep of thresholds ε and depths k, on both sides of W_ft = W + ΔW.

Shuttleworth, Andreas, Torralba & Sharma 2024 ("LoRA vs Full Fine-tuning: An Illusion of
Equivalence"): a singular vector y_j among the top k of the fine-tuned matrix is an intruder when
max_i |cos(y_j, x_i)| < ε over *all* singular vectors x_i of the pre-trained W, the definition of
:mod:`lab.kernels.subspaces` and the spectra probe. Here both sides: the left singular vectors of
W_ft against W's left ones, and the right against W's right ones.

Every count of the sweep comes from one number per examined vector: with c_j = max_i |cos(y_j, x_i)|
the count at (ε, k) is #{j ≤ k : c_j < ε}. So W_ft's top max(k) triplets are solved once, W's
leading directions once (one decomposition gives both sides), and W's full decomposition only
when the certificate of :func:`lab.kernels.subspaces.certified_max_cosines` fails for a side —
then once for both sides. The ``intruder_vectors`` table keeps c_j and σ_j, so any other
threshold can be applied later without recomputing.

Example::

    >>> import numpy as np
    >>> w = np.diag([3.0, 2.0, 1.0, 0.0, 0.0])
    >>> d = np.zeros((5, 5)); d[3, 3] = 10.0  # a direction W does not have, above all of W's
    >>> s = intruder_sweep(w, d, ks=(1, 2))
    >>> s.left.sigma.round(6).tolist(), s.left.max_cos.round(6).tolist()
    ([10.0, 3.0], [0.0, 1.0])
    >>> s.count("left", 0.5, 1), s.count("right", 0.5, 2)
    (1, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.deltas import Delta, Kron, is_streamed
from lab.errors import NonFiniteError
from lab.kernels import subspaces
from lab.kernels.factored import Factors, as_matrix_or_factors
from lab.probes.registry import Probe, ProbeContext, Rows, field_help, register

SIDES = ("left", "right")


@dataclass(frozen=True)
class IntrudersOptions:
    """Options of the intruders probe."""

    thresholds: tuple[float, ...] = field_help("the ε swept: a vector is an intruder when its largest |cos| with W's vectors is below ε",
                                               default=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9))
    ks: tuple[int, ...] = field_help("the depths k swept: the top-k singular vectors of W + ΔW examined",
                                     default=(10, 20, 50, 100))

    def __post_init__(self) -> None:
        thresholds, ks = tuple(float(t) for t in self.thresholds), tuple(int(k) for k in self.ks)
        if not thresholds or not all(0.0 < t <= 1.0 for t in thresholds):
            raise ValueError("thresholds must be in (0, 1] (at least one)")
        if not ks or min(ks) < 1:
            raise ValueError("ks must be at least 1 (at least one)")
        object.__setattr__(self, "thresholds", thresholds)
        object.__setattr__(self, "ks", ks)


@dataclass(frozen=True)
class SideVectors:
    """W_ft's examined singular vectors on one side: σ_j descending and c_j = max_i |cos(y_j, x_i)|."""

    sigma: np.ndarray
    max_cos: np.ndarray


@dataclass(frozen=True)
class IntruderSweep:
    """Both sides' examined vectors, and the counts read from them."""

    left: SideVectors
    right: SideVectors

    def side(self, name: str) -> SideVectors:
        return self.left if name == "left" else self.right

    def count(self, side: str, threshold: float, k: int) -> int:
        """#{j ≤ k : c_j < ε} on ``side``."""
        return int((self.side(side).max_cos[: int(k)] < threshold).sum())


def intruder_sweep(base: np.ndarray, delta_x, ks=(10, 20, 50, 100)) -> IntruderSweep:
    """c_j and σ_j for the top max(ks) left and right singular vectors of W + ΔW (fewer when the
    matrix has fewer nonzero singular values). ``delta_x``: a dense array, Factors, (B, A[, scale]) or Kron.

    Raises NonFiniteError for NaN or inf entries in W or ΔW.
    """
    base = np.asarray(base, dtype=np.float64)
    delta_x = as_matrix_or_factors(delta_x)
    if isinstance(delta_x, Kron):
        delta_x = delta_x.to_dense()
    finite = np.isfinite(base).all() and (delta_x.is_finite() if isinstance(delta_x, Factors) else np.isfinite(delta_x).all())
    if not finite:
        raise NonFiniteError(f"W + ΔW ({base.shape[0]}x{base.shape[1]}) holds NaN or inf; its singular vectors are undefined")
    kmax = max(int(k) for k in ks)
    # for factors from W's decomposition (W + ΔW never formed); raises NonFiniteError for a sum that overflows
    y_u, sigma, y_v = subspaces.tuned_singular_vectors(base, delta_x, kmax)
    lead = subspaces.leading_for_certificate(min(base.shape), kmax)
    u_w, _, v_w = subspaces.base_singular_vectors(base, lead)  # once per W and lead (a sweep: from disk)
    complete = lead is None or u_w.shape[1] < lead  # every direction of W with σ > 0
    every: list = []  # W's full decomposition, solved at most once for both sides

    def all_of_w() -> tuple[np.ndarray, np.ndarray]:
        if not every:
            u, _, v = subspaces.base_singular_vectors(base, None)
            every.append((u, v))
        return every[0]

    out = {}
    for name, y, x_lead, pick in (("left", y_u, u_w, 0), ("right", y_v, v_w, 1)):
        if y.shape[1] == 0 or x_lead.shape[1] == 0:
            best = np.zeros(y.shape[1])  # W = 0: nothing to be close to
        else:
            best = subspaces.max_cosines_over_all(y.T @ x_lead, complete, lambda y=y, pick=pick: y.T @ all_of_w()[pick])
        out[name] = SideVectors(sigma=np.asarray(sigma, dtype=np.float64), max_cos=np.asarray(best, dtype=np.float64))
    return IntruderSweep(out["left"], out["right"])


def count_rows(sweep: IntruderSweep, options: IntrudersOptions) -> list[dict]:
    """One ``intruders`` row per (side, k, ε)."""
    rows = []
    for side in SIDES:
        available = sweep.side(side).max_cos.size
        for k in options.ks:
            for t in options.thresholds:
                rows.append({"side": side, "top_k": int(k), "examined": min(int(k), available), "threshold": float(t),
                             "intruder_count": sweep.count(side, t, k)})
    return rows


def vector_rows(sweep: IntruderSweep) -> list[dict]:
    """One ``intruder_vectors`` row per examined vector and side."""
    return [{"side": side, "index": j + 1, "sigma": float(s), "max_cos": float(c)}
            for side in SIDES
            for j, (s, c) in enumerate(zip(sweep.side(side).sigma, sweep.side(side).max_cos))]


def _run(delta: Delta, options: IntrudersOptions, ctx: ProbeContext) -> Rows:
    if delta.source != "delta" or delta.base is None or is_streamed(delta.base) or is_streamed(delta.matrix):
        return {"intruders": [], "intruder_vectors": []}  # needs W in memory (streamed W: not yet)
    try:
        sweep = intruder_sweep(delta.base, delta.matrix, options.ks)
    except NonFiniteError:  # NaN/inf weights let through by --allow-nonfinite: no rows rather than false ones
        return {"intruders": [], "intruder_vectors": []}
    return {"intruders": count_rows(sweep, options), "intruder_vectors": vector_rows(sweep)}


register(Probe(
    name="intruders",
    tables=("intruders", "intruder_vectors"),
    run=_run,
    options=IntrudersOptions,
    default=False,
    description="intruder dimensions of W + ΔW over ε × k, left and right singular vectors (needs --base)",
))
