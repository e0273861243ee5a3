"""Which matrices a matrix probe analyses for one delta.

The ``source`` column says which: ``delta`` (ΔW, dense, factored or streamed), ``weight`` (the
base W, when ``weight`` is among the probe's targets and a base was given), and for the run's
control matrices ``random`` and ``random_lora`` (see :mod:`lab.kernels.controls`). Shared by the
entanglement and spectra probes so that both read the same matrices under the same labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from lab.deltas import Delta
from lab.errors import LabError
from lab.probes.registry import Rows

TARGETS = ("delta", "weight")


@dataclass(frozen=True)
class Input:
    """One matrix to analyse, its label and the largest rank it can have."""

    source: str
    x: Any  # np.ndarray | Factors | MatrixSource
    rank_bound: int


def targets(delta: Delta, wanted: Iterable[str]) -> list[Input]:
    """ΔW when ``delta`` is wanted, and W when ``weight`` is wanted and a base is present.

    A control matrix (source ``random``/``random_lora``) is analysed as itself whatever is wanted.
    """
    if delta.source != "delta":
        return [Input(delta.source, delta.matrix, delta.rank_bound)]
    out = []
    if "delta" in wanted:
        out.append(Input("delta", delta.matrix, delta.rank_bound))
    if "weight" in wanted and delta.base is not None:
        out.append(Input("weight", delta.base, min(delta.shape)))
    return out


def check_targets(wanted: Iterable[str]) -> tuple[str, ...]:
    """``wanted`` as a tuple, LabError for a name that is not a target."""
    wanted = tuple(wanted)
    bad = [t for t in wanted if t not in TARGETS]
    if bad or not wanted:
        raise LabError(f"unknown target(s) {', '.join(map(repr, bad)) or '(none)'}; choose from {', '.join(TARGETS)}")  # repr: one line whatever was typed
    return wanted


def merge(parts: Iterable[Rows]) -> Rows:
    """Concatenate the rows of several results table by table."""
    out: dict[str, list[dict[str, Any]]] = {}
    for part in parts:
        for table, rows in part.items():
            out.setdefault(table, []).extend(rows)
    return out
