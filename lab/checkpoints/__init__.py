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

Where things live: ``records`` (the records passed around: Checkpoint, Layout, Base, ModuleRead,
Part), ``discover`` (what a path holds, time series), ``base`` (opening the base), ``formats`` (the one
table of formats: which function plans a checkpoint's module reads and which reads one; ``plan_reads``,
``read_module``), ``index`` / ``safetensors_header`` / ``pickled`` (where each tensor is), ``full`` /
``adapter`` (planning full models and LoRA adapters), ``module_delta`` (their readers, the base weight, a
read cut into Deltas) and ``loader`` / ``ranges`` (getting data), ``naming`` (layer, role), ``pairing``
(base keys), ``adapter_config`` / ``adapter_weights`` (PEFT LoRA), ``dora``, ``fused`` (GPT-2's c_attn),
``mps`` (MPS Adaptation), ``kohya`` / ``lycoris`` / ``diffusers_names`` (image-model LoRA files:
kohya, LyCORIS, diffusers), ``peft_general`` (every other weight-modifying PEFT type, through PEFT, on
the skeleton of ``peft_skeleton``) and ``peft_types`` (the structured readers of some of them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from lab.checkpoints.base import open_base
from lab.checkpoints.discover import discover
from lab.checkpoints.formats import plan_reads, read_module, selector
from lab.checkpoints.loader import TensorLoader
from lab.checkpoints.naming import ModuleName, module_name
from lab.checkpoints.records import Base, Checkpoint, ModuleRead, Part
from lab.deltas import Delta

__all__ = ["Base", "Checkpoint", "ModuleName", "ModuleRead", "Part", "TensorLoader", "discover", "iter_deltas",
           "module_name", "open_base", "plan_reads", "read_module", "selector"]


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

