"""The run's control matrices as Deltas: what "no structure" looks like for each analysed shape.

Planned from the shapes in the plan (every analysed module's (rows, cols, rank bound)), one
:class:`~lab.engine.units.ControlUnit` per matrix: a Gaussian matrix for every shape, and for a
rank-limited (adapter) update a product of Gaussian factors of that rank (see
:mod:`lab.kernels.controls`). A Gaussian control larger than the streaming threshold is streamed
(:class:`~lab.sources.GaussianSource`, the same matrix element for element).
"""

from __future__ import annotations

from typing import Iterable

from lab.deltas import Delta
from lab.engine.units import ControlUnit, unit_key
from lab.kernels import controls as ctl


def plan_controls(shapes: Iterable[tuple[int, int, int]], seed: int, stream_bytes: int | None) -> list[ControlUnit]:
    """One unit per control matrix of ``shapes`` ((rows, cols, rank_bound)), in a fixed order."""
    shapes = sorted({(int(m), int(n), int(r)) for m, n, r in shapes})
    units = [ControlUnit(unit_key("control", ctl.RANDOM, m, n, seed), ctl.RANDOM, m, n, None, seed, stream_bytes)
             for m, n in sorted({(m, n) for m, n, _ in shapes})]
    units += [ControlUnit(unit_key("control", ctl.RANDOM_LORA, m, n, r, seed), ctl.RANDOM_LORA, m, n, r, seed, stream_bytes)
              for m, n, r in shapes if r < min(m, n)]
    return units


def control_delta(unit: ControlUnit) -> Delta:
    """The control matrix of ``unit`` as a Delta whose ``source`` is ``random`` or ``random_lora``."""
    if unit.source == ctl.RANDOM_LORA:
        matrix, kind = ctl.gaussian_factors(unit.rows, unit.cols, unit.rank, unit.seed), "lora"
    elif unit.stream_bytes is not None and unit.rows * unit.cols * 8 > unit.stream_bytes:
        from lab.sources import GaussianSource

        matrix, kind = GaussianSource(unit.rows, unit.cols, unit.seed), "full"
    else:
        matrix, kind = ctl.gaussian_matrix(unit.rows, unit.cols, unit.seed), "full"
    return Delta(module=unit.module, layer=None, role="random", kind=kind, matrix=matrix, source=unit.source)
