"""The plan of a run: every unit of work, built once from the checkpoints' and the base's indexes.

Planning reads no tensor data. Each checkpoint was indexed once when it was discovered and the
base once when it was opened, so however many checkpoints share a base, no file is indexed twice.
Every lookup and shape is checked here, so bad input fails before any work is done.

Plan order, which is also the order of the rows in every finished table:

1. module units: checkpoints in the order given (a training output's ``checkpoint-N/`` by step,
   its final model last), modules in natural order within each;
2. group units: one per module present in at least two checkpoints, in first-seen order;
3. model units: one per checkpoint, in the same order;
4. pair units: one per pair of checkpoints (i < j in run order), by i then j;
5. control units: Gaussian matrices by shape, then Gaussian factors by shape and rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lab.checkpoints import Base, Checkpoint, ModuleRead, plan_reads
from lab.engine.controls import plan_controls
from lab.engine.units import CheckpointRef, GroupUnit, ModelUnit, ModuleUnit, PairUnit, PrepareUnit, unit_key
from lab.errors import InputError
from lab.probes.registry import Probe


@dataclass
class Plan:
    """Units in plan order, the base-model preparations they depend on, and the analysed shapes."""

    units: list[Any] = field(default_factory=list)
    prepare: list[PrepareUnit] = field(default_factory=list)
    shapes: list[tuple[int, int, int]] = field(default_factory=list)  # (rows, cols, rank bound) analysed

    @property
    def keys(self) -> list[str]:
        return [u.key for u in self.units]

    def counts(self) -> dict[str, int]:
        """Units per kind, for the manifest."""
        out: dict[str, int] = {}
        for u in self.units:
            name = type(u).__name__.removesuffix("Unit").lower()
            out[name] = out.get(name, 0) + 1
        return out


def rank_bound(read: ModuleRead, rows: int) -> int:
    """The largest rank a part of ``read`` can have: r for factors, what a structured PEFT reader says
    (LoKr: rank(W1)·rank(W2)), min(rows, cols) for dense updates."""
    if read.peft is not None:
        from lab.checkpoints.formats import planned_rank_bound

        bound = planned_rank_bound(read, rows)
        if bound is not None:
            return min(int(bound), rows, read.shape[1])
    if read.kohya is not None and not (read.kind == "dora" and read.base is not None):  # image LoRA files
        return min(read.kohya.rank_bound(), rows, read.shape[1])
    factored = read.kind in ("lora", "mps") or (read.kind == "dora" and read.base is None)  # mps: A is C1, r first
    return min(int(read.A.shape[0]), rows, read.shape[1]) if factored else min(rows, read.shape[1])


def build_plan(checkpoints: list[Checkpoint], base: Base | None, probes: list[Probe], *, modules: str | None = None,
               allow_nonfinite: bool = False, controls: bool = False, seed: int = 0,
               stream_bytes: int | None = None, corpus: str | None = None) -> Plan:
    """Every unit of a run (see the module docstring for the order); LabError for bad input."""
    scopes = {p.scope for p in probes}
    plan = Plan()
    reads: list[tuple[CheckpointRef, list[ModuleRead]]] = []
    for ckpt in checkpoints:
        ref = CheckpointRef(ckpt.name, ckpt.step, str(ckpt.path.resolve()), ckpt.format)
        found = plan_reads(ckpt, base, modules=modules, allow_nonfinite=allow_nonfinite)
        if not found:
            what = f" matching --modules {modules!r}" if modules else ""
            raise InputError(f"{ckpt.path}: no 2-D weight updates{what} to analyse")
        reads.append((ref, found))
    shapes: dict[tuple[int, int, int], None] = {}
    for ref, found in reads:
        for read in found:
            if "module" in scopes:
                plan.units.append(ModuleUnit(unit_key("module", ref.path, read.module), ref, read, stream_bytes))
            for part in read.parts:
                rows = part.rows[1] - part.rows[0] if part.rows else read.shape[0]
                shapes.setdefault((rows, read.shape[1], rank_bound(read, rows)), None)
    plan.shapes = list(shapes)
    if "group" in scopes:
        plan.units += _groups(reads, stream_bytes)
    if "model" in scopes or "pair" in scopes:
        plan.prepare, model_units, pair_units = _models(checkpoints, reads, base, probes, corpus)
        plan.units += model_units + pair_units
    if controls:
        plan.units += plan_controls(plan.shapes, seed, stream_bytes)
    return plan


def _groups(reads: list[tuple[CheckpointRef, list[ModuleRead]]], stream_bytes: int | None) -> list[GroupUnit]:
    by_module: dict[str, list[tuple[CheckpointRef, ModuleRead]]] = {}
    for ref, found in reads:
        for read in found:
            by_module.setdefault(read.module, []).append((ref, read))
    return [GroupUnit(unit_key("group", module, *(ref.path for ref, _ in members)), module, tuple(members), stream_bytes)
            for module, members in by_module.items() if len(members) >= 2]


def _models(checkpoints, reads, base: Base | None, probes: list[Probe], corpus: str | None):
    """Base preparations, model units (when a model-scope probe runs) and pair units (a pair-scope one)."""
    image = [c for c in checkpoints if c.format in ("kohya", "diffusers")]
    if image:
        names = ", ".join(p.name for p in probes if p.scope in ("model", "pair"))
        raise InputError(f"{image[0].path}: an image-model LoRA is analysed by the weight probes only; probe(s) {names} "
                         "run a language model on text: leave them out of --probes")
    needs_base = [p for p in probes if p.scope in ("model", "pair") and p.prepare is not None]
    if needs_base and base is None:
        names = ", ".join(p.name for p in needs_base)
        raise InputError(f"probe(s) {names} compare every checkpoint with the base model: pass --base BASE")
    base_path = str(base.path.resolve()) if base is not None else None
    prepare = {p.name: PrepareUnit(unit_key("prepare", p.name, base_path, corpus), p.name, base_path, corpus)
               for p in needs_base}
    scoped = lambda scope: tuple(prepare[p.name].key for p in needs_base if p.scope == scope)  # noqa: E731
    refs = [ref for ref, _ in reads]
    scopes = {p.scope for p in probes}
    models = [ModelUnit(unit_key("model", ref.path, base_path, corpus), ref, base_path, corpus, scoped("model"))
              for ref in refs] if "model" in scopes else []
    pairs = [PairUnit(unit_key("pair", a.path, b.path, base_path, corpus), a, b, base_path, corpus, scoped("pair"))
             for i, a in enumerate(refs) for b in refs[i + 1:]] if "pair" in scopes else []
    return list(prepare.values()), models, pairs
