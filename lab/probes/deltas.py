"""The ``deltas`` table: one row per module update — what was read, its shape, scale and size."""

from __future__ import annotations

from lab.deltas import Delta
from lab.probes.registry import Probe, ProbeContext, Rows, register


def delta_row(delta: Delta) -> dict:
    """Kind, shape, rank bound, scale and ‖ΔW‖_F (from the factors when factored)."""
    return {
        "kind": delta.kind,
        "rows": delta.shape[0],
        "cols": delta.shape[1],
        "rank_bound": delta.rank_bound,
        "scale": float(delta.scale) if delta.is_factored else None,
        "fro_norm": delta.fro_norm(),
        "factored": delta.is_factored,
        "note": delta.note,
    }


def _run(delta: Delta, ctx: ProbeContext) -> Rows:
    return {"deltas": [delta_row(delta)]}


register(Probe(name="deltas", tables=("deltas",), run=_run, description="what each update is: kind, shape, scale, Frobenius norm"))
