"""Fused projections (GPT-2's ``c_attn`` = [W_q; W_k; W_v]) split into one Delta per role.

The split is by rows of the (out, in) update: rows of a dense ΔW, rows of B for factors
(A is shared, since s·B·A restricted to a block of rows is s·B[rows]·A), rows of the base.
"""

from __future__ import annotations

from dataclasses import replace

from lab.checkpoints.naming import ModuleName
from lab.deltas import Delta


def split_fused(delta: Delta, name: ModuleName) -> list[Delta]:
    """``delta`` itself, or one Delta per part named ``<module>.<role>`` for a fused module."""
    if not name.split:
        return [delta]
    parts = len(name.split)
    if delta.shape[0] % parts:  # not the layout the rule expects: analyse it whole
        note = f"fused {'/'.join(name.split)} not split: {delta.shape[0]} rows"
        return [replace(delta, role="other", note="; ".join(filter(None, [delta.note, note])))]
    size = delta.shape[0] // parts
    out = []
    for i, role in enumerate(name.split):
        rows = slice(i * size, (i + 1) * size)
        out.append(
            replace(
                delta,
                module=f"{name.module}.{role}",
                role=role,
                shape=(size, delta.shape[1]),
                dense=None if delta.dense is None else delta.dense[rows],
                B=None if delta.B is None else delta.B[rows],
                base=None if delta.base is None else delta.base[rows],
            )
        )
    return out
