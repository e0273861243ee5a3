"""Structured readers for PEFT types whose update has a structure worth keeping (factors, a Kronecker
product, a diagonal scaling): each turns one general-path module read into ΔW without building it
densely where the structure gives the answer faster, and equals PEFT's own update to 1e-6 relative.

A reader is ``read(spec, loader) -> (matrix, base, note)`` exactly like
:func:`lab.checkpoints.peft_general.read_peft`, which it replaces for its type: ``spec`` is the
:class:`~lab.checkpoints.reads.ModuleRead` the general path planned (its ``peft`` field holds the
module's tensors and the shared ones, already checked against PEFT's skeleton), ``matrix`` is one
representation :class:`lab.deltas.Delta` accepts, in the (out, in) layout. A reader returns None for
a module it does not handle (LoKr: a layer that is not an ``nn.Linear``); the general path reads that one.

Types without a reader here go through PEFT (the general path); see :data:`READERS`.
"""

from __future__ import annotations

import importlib
from typing import Callable

# peft_type (upper case) -> "module:function" under this package, imported when first used
READERS: dict[str, str] = {
    "LOKR": "lokr:read",
}


def reader(ptype: str) -> Callable | None:
    """The structured reader of ``ptype``, or None (then the general path reads it through PEFT)."""
    target = READERS.get(ptype.upper())
    if target is None:
        return None
    module, function = target.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)
