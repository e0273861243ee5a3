"""Units of work: small picklable descriptions (paths, tensor keys, scale, kind, shape, split rules).

A unit holds no open file and no array, so it runs the same in this process or on a Dask worker
that sees the same filesystem. Every unit has a stable ``key`` (the name of its durable part in
the run folder, so a resumed run knows what is done) and supplies the identifying columns of the
rows it produces. Kinds, one per probe scope plus the controls:

* :class:`ModuleUnit` (scope ``module``): one module of one checkpoint, read once, every
  module-scope probe run on its Delta(s);
* :class:`ControlUnit` (scope ``module``, controls): a seeded random matrix of an analysed shape;
* :class:`ModelUnit` (scope ``model``): one checkpoint as a loadable model, every model-scope
  probe run on it; the base's prepared outputs arrive from :class:`PrepareUnit`, computed once;
* :class:`GroupUnit` (scope ``group``): the same module across several checkpoints of the run;
* :class:`PairUnit` (scope ``pair``): two checkpoints of the run as loadable models, every
  pair-scope probe run on them; the base's prepared outputs arrive from :class:`PrepareUnit`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from lab.checkpoints.records import ModuleRead


def unit_key(kind: str, *identity: Any) -> str:
    """A stable, filesystem-safe key: the kind and a hash of what identifies the unit."""
    digest = hashlib.sha1("\x1f".join(map(str, identity)).encode()).hexdigest()[:16]
    return f"{kind}-{digest}"


@dataclass(frozen=True)
class CheckpointRef:
    """A checkpoint as the units know it: name, step, path and format (no index, no handles)."""

    name: str
    step: int | None
    path: str
    format: str  # "adapter" or "full"


@dataclass(frozen=True)
class ModuleUnit:
    """Read one module of one checkpoint and run the module-scope probes on its Delta(s)."""

    key: str
    checkpoint: CheckpointRef
    read: ModuleRead
    stream_bytes: int | None = None

    @property
    def label(self) -> str:
        return f"{self.checkpoint.name}: {self.read.module}"

    @property
    def files(self) -> list[str]:
        return self.read.files


@dataclass(frozen=True)
class ControlUnit:
    """A seeded random matrix standing in for an analysed shape (``random`` or ``random_lora``)."""

    key: str
    source: str  # "random" (Gaussian rows×cols) or "random_lora" (Gaussian factors of rank r)
    rows: int
    cols: int
    rank: int | None
    seed: int
    stream_bytes: int | None = None

    @property
    def label(self) -> str:
        return f"controls: {self.module}"

    @property
    def module(self) -> str:
        """The module name the control's rows carry, e.g. ``random 384x384`` or ``random lora 384x384 r16``."""
        if self.source == "random":
            return f"random {self.rows}x{self.cols}"
        return f"random lora {self.rows}x{self.cols} r{self.rank}"

    @property
    def files(self) -> list[str]:
        return []


@dataclass(frozen=True)
class PrepareUnit:
    """Run one model-scope probe's ``prepare`` on the base model, once per run."""

    key: str
    probe: str
    base: str  # the base model's path
    corpus: str | None = None  # a texts file, or None for the default corpus

    @property
    def label(self) -> str:
        return f"base: prepare {self.probe}"

    @property
    def files(self) -> list[str]:
        return [self.base]


@dataclass(frozen=True)
class ModelUnit:
    """Load one checkpoint as a model and run every model-scope probe on it."""

    key: str
    checkpoint: CheckpointRef
    base: str | None
    corpus: str | None = None
    prepared: tuple[str, ...] = ()  # keys of the PrepareUnits whose results this unit receives

    @property
    def label(self) -> str:
        return f"{self.checkpoint.name}: model"

    @property
    def files(self) -> list[str]:
        return [self.checkpoint.path] + ([self.base] if self.base else [])


@dataclass(frozen=True)
class GroupUnit:
    """The same module read from several checkpoints, for the group-scope probes."""

    key: str
    module: str
    members: tuple[tuple[CheckpointRef, ModuleRead], ...] = field(default=())
    stream_bytes: int | None = None

    @property
    def label(self) -> str:
        return f"group of {len(self.members)}: {self.module}"

    @property
    def files(self) -> list[str]:
        return sorted({f for _, read in self.members for f in read.files})


@dataclass(frozen=True)
class PairUnit:
    """Two checkpoints of the run (``first`` before ``second`` in run order), run as models by the
    pair-scope probes; each loads one model at a time, so a pair costs one model's memory."""

    key: str
    first: CheckpointRef
    second: CheckpointRef
    base: str | None
    corpus: str | None = None
    prepared: tuple[str, ...] = ()  # keys of the PrepareUnits whose results this unit receives

    @property
    def label(self) -> str:
        return f"{self.first.name}:{self.second.name}: pair"

    @property
    def files(self) -> list[str]:
        return [self.first.path, self.second.path] + ([self.base] if self.base else [])
