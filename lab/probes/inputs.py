"""Which matrices a matrix probe analyses for one delta (and for the run's controls).

The ``source`` column says which: ``delta`` (ΔW, dense or factored), ``weight`` (the base W,
with ``--targets weight`` when a base was given), ``random`` and ``random_lora`` (controls, see
:mod:`lab.probes.controls`). Shared by the entanglement and spectra probes so that both read the
same matrices under the same labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from lab.deltas import Delta
from lab.probes import controls as ctl
from lab.probes.factored import Factors, as_matrix_or_factors
from lab.probes.registry import ProbeContext, Rows


@dataclass(frozen=True)
class Input:
    """One matrix to analyse, its label and the largest rank it can have."""

    source: str
    x: np.ndarray | Factors
    rank_bound: int
    module: str | None = None  # set for controls only (the run adds it for deltas)


def targets(delta: Delta, ctx: ProbeContext) -> list[Input]:
    """ΔW when ``delta`` is a target, and W when ``weight`` is a target and a base is present."""
    out = []
    if "delta" in ctx.targets:
        out.append(Input("delta", as_matrix_or_factors(delta), delta.rank_bound))
    if "weight" in ctx.targets and delta.base is not None:
        out.append(Input("weight", as_matrix_or_factors(delta.base), min(delta.base.shape)))
    return out


def controls(shapes: Iterable[tuple[int, int, int]], seed: int) -> Iterator[Input]:
    """For every analysed shape a Gaussian matrix, and for every rank-limited one Gaussian factors.

    ``shapes`` holds (rows, cols, rank_bound); a rank bound below min(rows, cols) marks a factored
    (adapter) update and adds a ``random_lora`` control of that rank. A generator, so that only
    one control matrix is held at a time.
    """
    shapes = sorted({(int(m), int(n), int(r)) for m, n, r in shapes})
    for m, n in sorted({(m, n) for m, n, _ in shapes}):
        yield Input(ctl.RANDOM, ctl.gaussian_matrix(m, n, seed), min(m, n), ctl.control_module(ctl.RANDOM, m, n))
    for m, n, r in shapes:
        if r < min(m, n):
            yield Input(ctl.RANDOM_LORA, ctl.gaussian_factors(m, n, r, seed), r, ctl.control_module(ctl.RANDOM_LORA, m, n, r))


def label(rows: Rows, control: Input) -> Rows:
    """Give a control's rows their own identity: module name, no layer, role ``random``."""
    for table in rows.values():
        for row in table:
            row.update(module=control.module, layer=None, role="random")
    return rows


def control_rows(analyse: Callable[[Any, str, int], Rows], shapes: Iterable[tuple[int, int, int]],
                 seed: int) -> Rows:
    """A probe's rows for every control of ``shapes``: ``analyse(x, source, rank_bound)`` on each, labelled."""
    return merge(label(analyse(c.x, c.source, c.rank_bound), c) for c in controls(shapes, seed))


def merge(parts: Iterable[Rows]) -> Rows:
    """Concatenate the rows of several results table by table."""
    out: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        for table, rows in part.items():
            out.setdefault(table, []).extend(rows)
    return out
