"""Fused projections (GPT-2's ``c_attn`` = [W_q; W_k; W_v]) split into one part per role.

The split is by rows of the (out, in) update: rows of a dense ΔW, rows of B for factors
(A is shared, since s·B·A restricted to a block of rows is s·B[rows]·A), rows of the base.
"""

from __future__ import annotations

from lab.checkpoints.naming import ModuleName
from lab.checkpoints.records import Part


def parts(name: ModuleName, rows: int) -> tuple[Part, ...]:
    """The parts of a module with ``rows`` output rows: itself, or ``<module>.<role>`` row blocks."""
    if not name.split:
        return (Part(name.module, name.role),)
    n = len(name.split)
    if rows % n:  # not the layout the rule expects: analyse it whole
        return (Part(name.module, "other", note=f"fused {'/'.join(name.split)} not split: {rows} rows"),)
    size = rows // n
    return tuple(Part(f"{name.module}.{role}", role, (i * size, (i + 1) * size)) for i, role in enumerate(name.split))


def selected(all_parts: tuple[Part, ...], select) -> tuple[Part, ...]:
    """The parts whose name ``select`` accepts."""
    return tuple(p for p in all_parts if select(p.module))
