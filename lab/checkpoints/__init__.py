"""Reading checkpoints: format detection, tensor indexes, module reads, loading, naming, pairing.

Public interface:

* ``discover(path) -> list[Checkpoint]``: one checkpoint, or a time series for a training output
  with ``checkpoint-N/`` folders (sorted by step). Validates cheaply up front (configs, headers,
  factor shapes against ``r``) and indexes each file once, so bad input fails before any work.
* ``open_base(path) -> Base``: the base model, indexed once per run.
* ``plan_reads(ckpt, base, *, modules, allow_nonfinite) -> list[ModuleRead]``: what to read for
  every module update of a checkpoint (picklable; all lookups and shapes checked now).
* ``read_module(read, loader) -> list[Delta]``: a module read turned into float64 Deltas.
* ``iter_deltas(ckpt, base=None, *, modules=None, allow_nonfinite=False) -> Iterator[Delta]``:
  both of the above in a loop, for notebooks and tests.

Where things live: ``discover`` (formats, time series), ``index`` / ``safetensors_header`` /
``pickled`` (where each tensor is), ``reads`` (module reads), ``full`` / ``adapter`` (planning
them), ``read`` and ``loader`` / ``ranges`` (getting data), ``naming`` (layer, role), ``pairing``
(base keys), ``adapter_config`` / ``adapter_weights`` (PEFT LoRA), ``dora``, ``fused`` (GPT-2's c_attn),
``mps`` (MPS Adaptation), ``kohya`` / ``lycoris`` / ``diffusers_names`` (image-model LoRA files:
kohya, LyCORIS, diffusers), ``peft_general`` (every other weight-modifying PEFT type, through PEFT).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterator

from lab.checkpoints.adapter import plan_adapter
from lab.checkpoints.base import Base, open_base
from lab.checkpoints.discover import Checkpoint, discover
from lab.checkpoints.full import plan_full
from lab.checkpoints.loader import TensorLoader
from lab.checkpoints.naming import ModuleName, module_name
from lab.checkpoints.peft_general import peft_type
from lab.checkpoints.read import read_module
from lab.checkpoints.reads import ModuleRead, Part
from lab.deltas import Delta
from lab.errors import InputError

__all__ = ["Base", "Checkpoint", "ModuleName", "ModuleRead", "Part", "TensorLoader", "discover", "iter_deltas",
           "module_name", "open_base", "plan_reads", "read_module", "selector"]


def plan_reads(ckpt: Checkpoint, base: Base | None, *, modules: str | None = None,
               allow_nonfinite: bool = False) -> list[ModuleRead]:
    """The module reads of ``ckpt`` (adapters: factors; full: tensor pairs with ``base``), checked now.

    ``modules`` is a regular expression searched in each module name (GPT-2's split parts are
    ``<module>.q`` etc.). Raises ``lab.errors.LabError`` subclasses naming the file and tensor.
    """
    select = selector(modules)
    if ckpt.format in ("kohya", "diffusers"):
        from lab.checkpoints.kohya import plan_image

        return plan_image(ckpt, base, select, allow_nonfinite)
    if ckpt.format == "mps":
        from lab.checkpoints.mps import plan_mps

        return plan_mps(ckpt, base, select, allow_nonfinite)
    if ckpt.format == "adapter" and peft_type(ckpt.layout.config) != "LORA":
        from lab.checkpoints.peft_general import plan_peft

        return plan_peft(ckpt, base, select, allow_nonfinite)
    plan = plan_adapter if ckpt.format == "adapter" else plan_full
    return plan(ckpt, base, select, allow_nonfinite)


def iter_deltas(
    ckpt: Checkpoint,
    base: str | Path | Base | None = None,
    *,
    modules: str | None = None,
    allow_nonfinite: bool = False,
    stream_bytes: int | None = None,
) -> Iterator[Delta]:
    """The module updates of ``ckpt``, read one module at a time, in float64.

    Adapters give factored Deltas (kind ``lora``; with ``base`` they carry ``W_base``), DoRA
    adapters the dense effective update with ``base`` and the factored low-rank part without
    (kind ``dora``); full checkpoints need ``base`` and give dense ``W_ft − W_base`` (kind
    ``full``). Lookups and shapes are checked before the first Delta is produced. By default
    everything is read into memory; ``stream_bytes`` streams larger dense updates from disk.
    """
    if base is not None and not isinstance(base, Base):
        base = open_base(base)
    reads = plan_reads(ckpt, base, modules=modules, allow_nonfinite=allow_nonfinite)
    return _read_all(reads, stream_bytes)


def _read_all(reads: list[ModuleRead], stream_bytes: int | None) -> Iterator[Delta]:
    with TensorLoader() as loader:
        for spec in reads:
            yield from read_module(spec, loader, stream_bytes)


def selector(pattern: str | None) -> Callable[[str], bool]:
    """A predicate on module names: ``re.search(pattern, name)``, everything for None."""
    if pattern is None:
        return lambda name: True
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise InputError(f"--modules {pattern!r}: not a valid regular expression ({e})") from None
    return lambda name: compiled.search(name) is not None
