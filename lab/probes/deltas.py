"""The ``deltas`` table: one row per module update — what was read, its shape, scale and size."""

from __future__ import annotations

from lab.deltas import Delta
from lab.probes.registry import Probe, ProbeContext, Rows, register


def delta_row(delta: Delta) -> dict:
    """Kind, shape, rank bound, scale and ‖ΔW‖_F (from the factors when factored)."""
    rows, cols = delta.shape
    return {
        "kind": delta.kind,
        "rows": rows,
        "cols": cols,
        "rank_bound": delta.rank_bound,
        "scale": delta.scale,
        "fro_norm": delta.fro_norm(),
        "factored": delta.is_factored,
        "note": delta.note,
    }


def _run(delta: Delta, options, ctx: ProbeContext) -> Rows:
    return {"deltas": [delta_row(delta)]}


register(Probe(name="deltas", tables=("deltas",), run=_run, on_zero=True,
               description="what each update is: kind, shape, scale, Frobenius norm"))
