"""Structured readers for PEFT types whose update has a structure worth keeping (factors, a Kronecker
product, a diagonal scaling): each turns one general-path module read into ΔW without building it
densely where the structure gives the answer faster, and equals PEFT's own update to 1e-6 relative.

A reader is ``read(spec, loader) -> (matrix, base, note)`` exactly like
:func:`lab.checkpoints.peft_general.read_peft`, which it replaces for its type: ``spec`` is the
:class:`~lab.checkpoints.reads.ModuleRead` the general path planned (its ``peft`` field holds the
module's tensors and the shared ones, already checked against PEFT's skeleton), ``matrix`` is one
representation :class:`lab.deltas.Delta` accepts, in the (out, in) layout. A reader may return a fourth
element, a dict of more :class:`~lab.deltas.Delta` fields (AdaLoRA's ``pruned_ranks``). A reader returns
None for a module it does not handle (LoKr: a layer that is not an ``nn.Linear``; LoHa: a convolution's
CP form); the general path reads that one. A reader module may also define ``rank_bound(spec, rows)``:
the Delta's rank bound from the stored shapes alone (:func:`planned_rank_bound`).

The readers (each file's docstring gives PEFT 0.21's formula it reproduces):

* ``adalora``: factors B·(A ⊙ λ)·lora_alpha/(init_r + 1e-5) of the ranks λ ≠ 0 (rank bound: the kept
  ranks; the pruned ones are the Delta's ``pruned_ranks``),
* ``vera``: factors (λ_b ⊙ B[:out])·(λ_d ⊙ A[:, :in]) of the shared projections (rank ≤ r),
* ``loha``: Khatri–Rao factors of (w1a·w1b) ⊙ (w2a·w2b)·alpha/r (rank ≤ r1·r2), Linear layers,
* ``lokr``: s·kron(W1, W2) (:class:`lab.deltas.Kron`; rank ≤ rank(W1)·rank(W2)), Linear layers,
* ``ia3``: dense W·diag(l − 1) or diag(l − 1)·W from the base weight (full rank bound).

Types without a reader here go through PEFT (the general path); see :data:`READERS`.
"""

from __future__ import annotations

import importlib
from typing import Callable

# peft_type (upper case) -> "module:function" under this package, imported when first used
READERS: dict[str, str] = {
    "ADALORA": "adalora:read",
    "IA3": "ia3:read",
    "LOHA": "loha:read",
    "LOKR": "lokr:read",
    "VERA": "vera:read",
}


def reader(ptype: str) -> Callable | None:
    """The structured reader of ``ptype``, or None (then the general path reads it through PEFT)."""
    target = READERS.get(ptype.upper())
    if target is None:
        return None
    module, function = target.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)


def planned_rank_bound(spec, rows: int) -> int | None:
    """The rank bound the Delta of ``rows`` rows of ``spec`` will have, when the type's reader module
    says so from the stored shapes alone (its optional ``rank_bound(spec, rows)``), else None. The plan
    uses it so that the run's controls (random_lora of that rank) match what the reader gives."""
    target = READERS.get(spec.peft.peft_type.upper())
    if target is None:
        return None
    bound = getattr(importlib.import_module(f"{__name__}.{target.split(':')[0]}"), "rank_bound", None)
    return bound(spec, rows) if bound is not None else None
