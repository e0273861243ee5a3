"""The probe registry: a probe is a pure function from a Delta to rows of one or more tables.

Probes know nothing about files, parquet or the CLI. ``lab.analyze`` maps every registered
probe that was asked for over every delta of every checkpoint, adds the identifying columns
(run, checkpoint, step, module, layer, role) and hands the rows to the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from lab.deltas import Delta

Rows = dict[str, list[dict[str, Any]]]  # table name -> rows


@dataclass
class ProbeContext:
    """What a probe may know besides the delta: its options and a seed. No file handles."""

    options: dict[str, Any] = field(default_factory=dict)  # probe name -> its options object
    seed: int = 0
    targets: tuple[str, ...] = ("delta",)  # "delta" and/or "weight" (W itself, needs a base)
    controls: bool = False  # add seeded random matrices of every analysed shape (source = random)

    def options_for(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


@dataclass(frozen=True)
class Probe:
    """A registered probe.

    ``run(delta, ctx)`` returns rows per table for one delta. ``controls(shapes, ctx)``, when
    given, returns rows for reference inputs (random matrices of the analysed shapes), called once
    per run with the set of ``(rows, cols, rank_bound)`` seen; its rows carry their own ``module``.
    """

    name: str
    tables: tuple[str, ...]
    run: Callable[[Delta, ProbeContext], Rows]
    default: bool = True
    controls: Callable[[Iterable[tuple[int, int, int]], ProbeContext], Rows] | None = None
    description: str = ""


_REGISTRY: dict[str, Probe] = {}


def register(probe: Probe) -> Probe:
    """Add a probe to the registry (a later registration of the same name replaces it)."""
    _REGISTRY[probe.name] = probe
    return probe


def available() -> dict[str, Probe]:
    """Registered probes by name, after importing the built-in probe modules."""
    import lab.probes  # noqa: F401  (registers the built-in probes)

    return dict(_REGISTRY)


def resolve(names: Iterable[str] | None) -> list[Probe]:
    """The probes for a ``--probes`` list (``None`` or ``all``-free default: those marked default)."""
    from lab.errors import LabError

    probes = available()
    if names is None:
        return [p for p in probes.values() if p.default]
    names = [n.strip() for n in names if n.strip()]
    if names == ["all"]:
        return list(probes.values())
    unknown = [n for n in names if n not in probes]
    if unknown:
        raise LabError(f"unknown probe(s) {', '.join(unknown)}; available: {', '.join(sorted(probes))}")
    chosen = [probes[n] for n in names]
    if not any(p.name == "deltas" for p in chosen):  # the deltas table is the run's index
        chosen.insert(0, probes["deltas"])
    return chosen
