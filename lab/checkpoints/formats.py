"""The formats lab reads, in one table: for each format key the function that plans a checkpoint's
module reads and the one that reads a planned module.

:func:`plan_reads` looks up a checkpoint's key (:func:`format_key`) and calls its planner, which stamps
the key on every :class:`~lab.checkpoints.records.ModuleRead` it makes (``ModuleRead.format``);
:func:`read_module`, wherever the work runs, calls the reader of that key and cuts what it returns into
Deltas (:func:`lab.checkpoints.module_delta.deltas`); the engine's plan asks :func:`planned_rank_bound`.
Nothing else dispatches on the format, and no format's module imports this one, so adding a format is a
module with its two functions and a row here.

The keys: a checkpoint's own format (``full``, ``adapter`` for PEFT LoRA/rsLoRA/DoRA, ``mps``, ``kohya``,
``diffusers``) and, for an adapter of any other PEFT type, ``peft:<type>`` when that type has a structured
reader (:mod:`lab.checkpoints.peft_types`), else ``peft``: read through PEFT itself
(:mod:`lab.checkpoints.peft_general`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from lab.checkpoints import adapter, full, kohya, mps, peft_general
from lab.checkpoints.adapter_config import peft_type
from lab.checkpoints.loader import TensorLoader
from lab.checkpoints.module_delta import STREAM_BYTES, deltas, read_adapter, read_full
from lab.checkpoints.peft_skeleton import quiet
from lab.checkpoints.peft_types import adalora, ia3, loha, lokr, vera
from lab.checkpoints.records import Base, Checkpoint, ModuleRead
from lab.deltas import Delta
from lab.errors import InputError


@dataclass(frozen=True)
class Format:
    """How lab reads one format.

    ``plan(ckpt, base, select, allow_nonfinite, fmt) -> list[ModuleRead]``: the module reads of a
    checkpoint (``select``: a predicate on module names), every lookup and shape checked now, each read
    carrying ``format=fmt``. ``read(spec, loader, stream_bytes) -> (matrix, base, note)`` (maybe a fourth
    element: a dict of more Delta fields, AdaLoRA's ``pruned_ranks``): one module's update in float64 in
    the (out, in) layout, in any representation :class:`lab.deltas.Delta` accepts, and its base weight or
    None. A read may return None for a module it does not handle (LoKr: a layer that is not an
    ``nn.Linear``); the format named ``otherwise`` reads that one. ``rank_bound(spec, rows)``, when given,
    is the rank bound of a part of ``rows`` rows known from the stored shapes alone (for the plan's controls).
    """

    plan: Callable[..., list[ModuleRead]]
    read: Callable[..., tuple | None]
    rank_bound: Callable[[ModuleRead, int], int | None] | None = None
    otherwise: str | None = None


def _structured(reader) -> Format:
    """A PEFT type with a structured reader module: planned by the general path, read by the module's
    ``read`` (warnings silenced as on the general path), the general path reading what it leaves."""
    return Format(peft_general.plan_peft, quiet(reader.read), getattr(reader, "rank_bound", None), otherwise="peft")


FORMATS: dict[str, Format] = {
    "full": Format(full.plan_full, read_full),  # ΔW = W_ft − W_base
    "adapter": Format(adapter.plan_adapter, read_adapter),  # PEFT LoRA, rsLoRA, DoRA
    "mps": Format(mps.plan_mps, mps.read_mps),  # MPS Adaptation
    "kohya": Format(kohya.plan_image, kohya.read_image),  # kohya LoRA/LoCon and LyCORIS image-model files
    "diffusers": Format(kohya.plan_image, kohya.read_image),  # diffusers LoRA files
    "peft": Format(peft_general.plan_peft, peft_general.read_peft),  # any other PEFT type: dense ΔW through PEFT
    "peft:adalora": _structured(adalora),
    "peft:ia3": _structured(ia3),
    "peft:loha": _structured(loha),
    "peft:lokr": _structured(lokr),
    "peft:vera": _structured(vera),
}


def format_key(ckpt: Checkpoint) -> str:
    """The key of :data:`FORMATS` that plans ``ckpt``: its format; for an adapter of a PEFT type other than
    LoRA, ``peft:<type>`` when the type has a structured reader, else ``peft``."""
    if ckpt.format != "adapter":
        return ckpt.format
    ptype = peft_type(ckpt.layout.config)
    if ptype == "LORA":
        return "adapter"
    key = f"peft:{ptype.lower()}"
    return key if key in FORMATS else "peft"


def plan_reads(ckpt: Checkpoint, base: Base | None, *, modules: str | None = None,
               allow_nonfinite: bool = False) -> list[ModuleRead]:
    """The module reads of ``ckpt`` (adapters: factors; full: tensor pairs with ``base``), checked now.

    ``modules`` is a regular expression searched in each module name (GPT-2's split parts are
    ``<module>.q`` etc.). Raises ``lab.errors.LabError`` subclasses naming the file and tensor.
    """
    select = selector(modules)
    key = format_key(ckpt)
    return FORMATS[key].plan(ckpt, base, select, allow_nonfinite, key)


def read_module(spec: ModuleRead, loader: TensorLoader, stream_bytes: int | None = STREAM_BYTES) -> list[Delta]:
    """The Deltas of one module read (one, or one per part of a fused projection), in float64."""
    fmt = FORMATS[spec.format]
    read = fmt.read(spec, loader, stream_bytes)
    if read is None:  # the format's reader leaves this module to another
        read = FORMATS[fmt.otherwise].read(spec, loader, stream_bytes)
    matrix, base, note, *more = read
    return deltas(spec, matrix, base, note, more[0] if more else None)


def planned_rank_bound(spec: ModuleRead, rows: int) -> int | None:
    """The rank bound the Delta of ``rows`` rows of ``spec`` will have, when its format says so from the
    stored shapes alone (:attr:`Format.rank_bound`), else None. The plan uses it so that the run's
    controls (random_lora of that rank) match what the reader gives."""
    bound = FORMATS[spec.format].rank_bound
    return bound(spec, rows) if bound is not None else None


def selector(pattern: str | None) -> Callable[[str], bool]:
    """A predicate on module names: ``re.search(pattern, name)``, everything for None."""
    if pattern is None:
        return lambda name: True
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise InputError(f"--modules {pattern!r}: not a valid regular expression ({e})") from None
    return lambda name: compiled.search(name) is not None
