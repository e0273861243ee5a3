"""Reading checkpoints: format detection, tensor indexes, lazy loading, module naming, pairing.

Public interface (used by ``lab.analyze``):

* ``discover(path) -> list[Checkpoint]``: one checkpoint, or a time series for a training output
  with ``checkpoint-N/`` folders (sorted by step). Validates cheaply up front (configs, headers,
  factor shapes against ``r``) so that bad input fails before any work is done.
* ``iter_deltas(ckpt, base=None, *, modules=None, allow_nonfinite=False) -> Iterator[Delta]``:
  the module updates of one checkpoint, read one tensor (pair) at a time.

Where things live: ``discover`` (formats, time series), ``index`` / ``safetensors_header`` /
``pickled`` (where each tensor is), ``loader`` (getting it), ``naming`` (layer, role),
``pairing`` (base keys), ``adapter_config`` / ``adapter_weights`` / ``adapter`` (PEFT),
``dora``, ``full``, ``fused`` (GPT-2's c_attn split).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from lab.checkpoints.adapter import adapter_deltas
from lab.checkpoints.base import open_base
from lab.checkpoints.discover import Checkpoint, discover
from lab.checkpoints.full import full_deltas
from lab.checkpoints.naming import ModuleName, module_name
from lab.deltas import Delta
from lab.errors import InputError

__all__ = ["Checkpoint", "discover", "iter_deltas", "module_name", "ModuleName"]


def iter_deltas(
    ckpt: Checkpoint,
    base: str | Path | None = None,
    *,
    modules: str | None = None,
    allow_nonfinite: bool = False,
) -> Iterator[Delta]:
    """The module updates of ``ckpt``, read one tensor (pair) at a time, in float64.

    Adapters give factored Deltas (kind ``lora``; with ``base`` they carry ``W_base``), DoRA
    adapters the dense effective update with ``base`` and the factored low-rank part without
    (kind ``dora``); full checkpoints need ``base`` and give dense ``W_ft − W_base`` (kind
    ``full``). ``modules`` is a regular expression searched in each module name (GPT-2's split
    parts are ``<module>.q`` etc.). Raises ``lab.errors.LabError`` subclasses naming the file
    and tensor; lookups and shapes are checked before the first Delta is produced.
    """
    select = _selector(modules)
    base_model = open_base(base) if base is not None else None
    if ckpt.format == "adapter":
        return adapter_deltas(ckpt, base_model, select, allow_nonfinite)
    return full_deltas(ckpt, base_model, select, allow_nonfinite)


def _selector(pattern: str | None):
    if pattern is None:
        return lambda name: True
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise InputError(f"--modules {pattern!r}: not a valid regular expression ({e})") from None
    return lambda name: compiled.search(name) is not None
