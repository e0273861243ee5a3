"""The inventory of updates read: the ``deltas`` table, one row per module — kind, shape, scale and size."""

from __future__ import annotations

from lab.deltas import Delta
from lab.errors import NonFiniteError
from lab.kernels.norms import update_norm  # noqa: F401  (importable from here too)
from lab.probes.registry import Probe, ProbeContext, Rows, register


def delta_row(delta: Delta) -> dict:
    """Kind, shape, rank bound, scale and ‖ΔW‖_F (from the factors when factored; NaN for NaN/inf weights)."""
    rows, cols = delta.shape
    try:
        norm = update_norm(delta)
    except NonFiniteError:  # a streamed ΔW holding NaN/inf, let through by --allow-nonfinite
        norm = float("nan")
    return {
        "kind": delta.kind,
        "rows": rows,
        "cols": cols,
        "rank_bound": delta.rank_bound,
        "pruned_ranks": delta.pruned_ranks,
        "scale": delta.scale,
        "params": delta.params if delta.params is not None else _params(delta),
        "fro_norm": norm,
        "factored": delta.is_factored,
        "note": delta.note,
    }


def _params(delta: Delta) -> int:
    """Stored numbers of an update built in memory (no checkpoint said): its factors (a Kronecker
    product's two factors), else rows × cols."""
    if delta.kron is not None:
        return delta.kron.params
    f = delta.factors
    return int(f.B.size + f.A.size) if f is not None else delta.shape[0] * delta.shape[1]


def _run(delta: Delta, options, ctx: ProbeContext) -> Rows:
    return {"deltas": [delta_row(delta)]}


register(Probe(name="deltas", tables=("deltas",), run=_run, on_zero=True,
               description="what each update is: kind, shape, scale, Frobenius norm"))
