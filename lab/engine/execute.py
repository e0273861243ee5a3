"""Running one unit: read what it names, call its probes, attach the identifying columns.

This is what a Dask worker (or the serial loop) executes. It opens files by path only, returns
rows (small: lists of dicts) and never writes: the driver alone writes tables. Every row carries
the unit's identifying columns (run, checkpoint, step, module, layer, role); a probe's own values
for those columns win.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.checkpoints.loader import TensorLoader
from lab.checkpoints.formats import read_module
from lab.deltas import Delta
from lab.engine.basecache import BaseCache, CacheStats
from lab.engine.subjects import GroupSubject, ModelSubject, PairSubject
from lab.engine.units import ControlUnit, GroupUnit, ModelUnit, ModuleUnit, PairUnit, PrepareUnit
from lab.errors import InputError, NonFiniteError
from lab.kernels.memo import memo_for
from lab.kernels.norms import update_norm
from lab.probes.registry import Probe, ProbeContext, Rows
from lab.store.parts import encode

UNCHANGED = "unchanged: ΔW = 0, other probes skipped"


@dataclass(frozen=True)
class Work:
    """What every unit of a run needs besides itself: the probes, their options, the context."""

    run: str
    probes: tuple[Probe, ...]
    options: dict[str, Any] = field(default_factory=dict)  # probe name -> options object
    ctx: ProbeContext = ProbeContext()
    threads: int | None = None  # BLAS/torch threads per unit (None: leave the process's setting)
    base_cache: BaseCache | None = None  # where what the probes computed about each base W is kept (None: nowhere)

    def scoped(self, scope: str) -> list[Probe]:
        return [p for p in self.probes if p.scope == scope]


@dataclass
class UnitResult:
    """A finished unit: its rows per table (lists of dicts, or :class:`~lab.store.parts.EncodedTable`
    from :func:`run_unit_encoded`), and where and how long it ran."""

    key: str
    label: str
    rows: Rows
    seconds: float
    worker: str
    base_cache: dict[str, int] | None = None  # module units with a cache: entries found, stored, rejected
    cpu_seconds: float | None = None  # CPU time of the process while the unit ran (all its threads)


def run_unit(unit, work: Work, prepared: dict[str, Any] | None = None) -> UnitResult:
    """Execute ``unit`` (any kind but PrepareUnit) and return its rows with identifying columns."""
    t0, c0 = time.perf_counter(), time.process_time()
    stats = CacheStats() if work.base_cache is not None and isinstance(unit, ModuleUnit) else None
    with _threads(work.threads):
        _check_paths(unit)
        if isinstance(unit, ModuleUnit):
            rows = _module(unit, work, stats)
        elif isinstance(unit, ControlUnit):
            rows = _control(unit, work)
        elif isinstance(unit, ModelUnit):
            rows = _model(unit, work, prepared or {})
        elif isinstance(unit, GroupUnit):
            rows = _group(unit, work)
        elif isinstance(unit, PairUnit):
            rows = _pair(unit, work, prepared or {})
        else:
            raise TypeError(f"not a unit: {unit!r}")
    return UnitResult(unit.key, unit.label, rows, time.perf_counter() - t0, worker_name(),
                      stats.as_dict() if stats is not None else None, time.process_time() - c0)


def run_unit_encoded(unit, work: Work, prepared: dict[str, Any] | None = None) -> UnitResult:
    """:func:`run_unit` with each table's rows validated and serialised where the unit ran
    (:func:`lab.store.parts.encode`): what a Dask worker returns, so that the driver, which shares
    the machine with the workers, only appends bytes to the run's journal."""
    result = run_unit(unit, work, prepared)
    result.rows = encode(result.rows, declared_only=True)
    return result


def run_prepare(unit: PrepareUnit, work: Work) -> Any:
    """A model-scope probe's ``prepare`` on the base model (computed once per run)."""
    with _threads(work.threads):
        _check_paths(unit)
        probe = next(p for p in work.probes if p.name == unit.probe)
        subject = ModelSubject("base", None, Path(unit.base), "base", corpus=Path(unit.corpus) if unit.corpus else None)
        return probe.prepare(subject, work.options[probe.name], work.ctx)


def worker_name() -> str:
    """The Dask worker's address when running on one, else this host and process."""
    if "distributed" not in sys.modules:  # not on a worker; importing it costs a serial run ~0.4 CPU s
        return f"{socket.gethostname()}:{os.getpid()}"
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def _check_paths(unit) -> None:
    for path in unit.files:
        if not os.path.exists(path):
            raise InputError(f"worker {worker_name()}: cannot see {path}; every worker must see the inputs at the same path "
                             "(a shared filesystem)")


def _run_probe(probe: Probe, subject, work: Work, ids: dict[str, Any], out: Rows) -> None:
    for table, rows in probe.run(subject, work.options[probe.name], work.ctx).items():
        out.setdefault(table, []).extend({**ids, **row} for row in rows)


def _module(unit: ModuleUnit, work: Work, stats: CacheStats | None = None) -> Rows:
    out: Rows = {}
    probes = work.scoped("module")
    with TensorLoader() as loader:
        deltas = read_module(unit.read, loader, unit.stream_bytes)
    cached = _cached_bases(unit, deltas, work.base_cache, stats)
    for delta in deltas:
        ids = {"run": work.run, "checkpoint": unit.checkpoint.name, "step": unit.checkpoint.step,
               "module": delta.module, "layer": delta.layer, "role": delta.role}
        try:
            zero = update_norm(delta) == 0.0  # for a streamed ΔW also the pass that finds NaN/inf
        except NonFiniteError:
            if not unit.read.allow_nonfinite:
                raise
            zero = False
        if zero:
            # an untouched module (a full fine-tune of some modules, PEFT's B = 0 at init): say so
            # in the deltas table instead of filling the other tables with undefined entropies
            delta.note = "; ".join(filter(None, [delta.note, UNCHANGED]))
        for probe in probes:
            if probe.on_zero or not zero:
                _run_probe(probe, delta, work, ids, out)
    for address, base, known in cached:  # what the probes computed about W and did not find stored
        work.base_cache.store(address, memo_for(base), known, stats)
    return out


def _cached_bases(unit: ModuleUnit, deltas: list[Delta], cache: BaseCache | None, stats: CacheStats | None) -> list:
    """Each Delta's base W with the entries stored for it put into its memo: (address, W, keys put).

    Only W read as the base tensor's values in the Delta's layout (full fine-tunes, LoRA, DoRA): an
    image-model or general-PEFT reader may hand W over in another layout under the same tensor key."""
    read = unit.read
    if cache is None or read.base is None or read.kind not in ("full", "lora", "dora") or read.kohya or read.peft:
        return []
    out = []
    for delta, part in zip(deltas, read.parts):
        if delta.base is None:
            continue
        address = cache.address(read.base, read.conv1d, part.rows)
        if address is not None:
            out.append((address, delta.base, cache.load(address, memo_for(delta.base), stats)))
    return out


def _control(unit: ControlUnit, work: Work) -> Rows:
    from lab.engine.controls import control_delta

    out: Rows = {}
    delta = control_delta(unit)
    ids = {"run": work.run, "checkpoint": "controls", "step": None, "module": unit.module, "layer": None, "role": "random"}
    for probe in work.scoped("module"):
        if probe.on_controls:
            _run_probe(probe, delta, work, ids, out)
    return out


def _model(unit: ModelUnit, work: Work, prepared: dict[str, Any]) -> Rows:
    out: Rows = {}
    ck = unit.checkpoint
    subject = ModelSubject(ck.name, ck.step, Path(ck.path), ck.format, Path(unit.base) if unit.base else None,
                           Path(unit.corpus) if unit.corpus else None)
    ids = {"run": work.run, "checkpoint": ck.name, "step": ck.step, "module": None, "layer": None, "role": None}
    for probe in work.scoped("model"):
        subject.prepared = prepared.get(probe.name)
        _run_probe(probe, subject, work, ids, out)
    return out


def _subject(ck, base: str | None, corpus: str | None) -> ModelSubject:
    return ModelSubject(ck.name, ck.step, Path(ck.path), ck.format, Path(base) if base else None,
                        Path(corpus) if corpus else None)


def _pair(unit: PairUnit, work: Work, prepared: dict[str, Any]) -> Rows:
    out: Rows = {}
    subject = PairSubject(_subject(unit.first, unit.base, unit.corpus), _subject(unit.second, unit.base, unit.corpus))
    ids = {"run": work.run, "checkpoint": subject.name, "step": None, "module": None, "layer": None, "role": None}
    for probe in work.scoped("pair"):
        subject.prepared = prepared.get(probe.name)
        _run_probe(probe, subject, work, ids, out)
    return out


def _group(unit: GroupUnit, work: Work) -> Rows:
    out: Rows = {}
    per_member: list[list[Delta]] = []
    with TensorLoader() as loader:
        for _, read in unit.members:
            per_member.append(read_module(read, loader, unit.stream_bytes))
    names = [ck.name for ck, _ in unit.members]
    for i, first in enumerate(per_member[0]):
        subject = GroupSubject(first.module, names, [ck.step for ck, _ in unit.members], [d[i] for d in per_member])
        ids = {"run": work.run, "checkpoint": "+".join(names), "step": None, "module": first.module,
               "layer": first.layer, "role": first.role}
        for probe in work.scoped("group"):
            _run_probe(probe, subject, work, ids, out)
    return out


@contextlib.contextmanager
def _threads(n: int | None):
    """BLAS (numpy's OpenBLAS, via threadpoolctl) and torch limited to ``n`` threads inside the block.

    torch is limited when it is loaded; it is not imported for this (safetensors inputs are read
    without it, and its import costs each fresh worker seconds). A torch first imported inside a
    block starts with its own default, which on Dask workers is one thread (``OMP_NUM_THREADS=1``
    is set for their processes), and keeps the limit from then on.
    """
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        if before is not None:
            torch.set_num_threads(before)
        elif "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(n)
