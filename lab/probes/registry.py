"""The probe registry: a probe is a configured, pure function from a subject to rows of tables.

Probes know nothing about files, parquet, executors or the CLI. Every probe has a **scope**,
which says what it is handed (its *subject*):

* ``module``: one :class:`~lab.deltas.Delta` (ΔW of one module of one checkpoint, or one of the
  run's control matrices when the probe takes controls);
* ``model``: a :class:`~lab.engine.subjects.ModelSubject` (one checkpoint as a loadable model with
  the run's corpus) plus what the probe's ``prepare`` computed once on the base model;
* ``group``: a :class:`~lab.engine.subjects.GroupSubject` (the same module across several
  checkpoints or adapters of the run);
* ``pair``: a :class:`~lab.engine.subjects.PairSubject` (two checkpoints of the run as loadable
  models, each pair once, in run order) plus what the probe's ``prepare`` computed once on the base.

One call shape for every scope: ``probe.run(subject, options, ctx) -> Rows``. The engine adds the
identifying columns the unit supplies (run, checkpoint, step, module, layer, role); a probe's own
values for those columns win. Options are a frozen dataclass per probe (typed, documented with
``field(metadata={"help": ...})``), settable from the CLI (``--set spectra.top_k=8``) and the
Python API, recorded in the manifest and shown by ``lab probes``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

Rows = dict[str, list[dict[str, Any]]]  # table name -> rows
SCOPES = ("module", "model", "group", "pair")


@dataclass(frozen=True)
class ProbeContext:
    """What a probe may know besides its subject and options: the run's seed. No file handles.

    ``tick(label)`` reports a step inside a long unit (a forward pass of a model-scope probe) to
    whoever shows progress in this process: the serial engine's bar; a no-op on a Dask worker.
    """

    seed: int = 0

    def tick(self, label: str) -> None:
        if _STEP_REPORTER is not None:
            _STEP_REPORTER(label)


_STEP_REPORTER: Callable[[str], None] | None = None  # set by the engine around serial execution


@contextmanager
def reporting_steps(report: Callable[[str], None]) -> Iterator[None]:
    """Send :meth:`ProbeContext.tick` labels to ``report`` while the block runs (in this process)."""
    global _STEP_REPORTER
    previous, _STEP_REPORTER = _STEP_REPORTER, report
    try:
        yield
    finally:
        _STEP_REPORTER = previous


@dataclass(frozen=True)
class NoOptions:
    """A probe without options."""


@dataclass(frozen=True)
class Probe:
    """A registered probe.

    ``run(subject, options, ctx)`` returns rows per table. For the ``module`` scope, ``on_zero``
    says whether the probe also runs on an update with ΔW = 0 (an untouched module: only the
    ``deltas`` probe does, the others would report undefined entropies), and ``on_controls``
    whether it also runs on the run's control matrices (seeded random matrices of the analysed
    shapes). For the ``model`` and ``pair`` scopes, ``prepare(base_subject, options, ctx)``
    computes, once per run, what every checkpoint's (pair's) ``run`` receives as
    ``subject.prepared`` (the base's outputs).
    """

    name: str
    tables: tuple[str, ...]
    run: Callable[[Any, Any, ProbeContext], Rows]
    scope: str = "module"
    options: type = NoOptions
    default: bool = True
    on_zero: bool = False
    on_controls: bool = False
    prepare: Callable[[Any, Any, ProbeContext], Any] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"probe {self.name!r}: unknown scope {self.scope!r}; choose from {', '.join(SCOPES)}")
        if self.prepare is not None and self.scope not in ("model", "pair"):
            raise ValueError(f"probe {self.name!r}: only model- and pair-scope probes have a prepare step")


_REGISTRY: dict[str, Probe] = {}


def register(probe: Probe) -> Probe:
    """Add a probe to the registry (a later registration of the same name replaces it).

    Probes registered from user code (a notebook, a script, a test) run on Dask workers too: the
    engine ships the probe objects with the work, by value when their module is not importable there.
    """
    _REGISTRY[probe.name] = probe
    return probe


def available() -> dict[str, Probe]:
    """Registered probes by name: the built-in ones and any registered since.

    The built-in ones are always there: importing this module imports its package first, and
    ``lab/probes/__init__.py`` imports every built-in probe module (so this module imports none of
    them, and the package is in no import cycle)."""
    return dict(_REGISTRY)


def resolve(names: Iterable[str] | None) -> list[Probe]:
    """The probes for a ``--probes`` list (``None``: those marked default; ``all``: every one).

    The ``deltas`` probe, the run's index of what was read, is always included.
    """
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
    chosen = [probes[n] for n in dict.fromkeys(names)]
    if not any(p.name == "deltas" for p in chosen):
        chosen.insert(0, probes["deltas"])
    return chosen


def field_help(text: str, **kwargs: Any):
    """A dataclass field with a help text (shown by ``lab probes``)."""
    return field(metadata={"help": text}, **kwargs)
