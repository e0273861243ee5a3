"""What one probe computed about a matrix, kept for the other probes of the same unit.

The entanglement probe's row|column cut is the Gram matrix of ΔW's smaller side, whose
eigenvalues are σ²: the spectra probe needs exactly those, and for a streamed ΔW the Gram itself
(one pass over the files). A memo is a dict attached to the matrix object (the Delta's array or
source, the same object for every probe of a unit) through a weak reference, so it lives exactly
as long as the matrix does and is never found again for another matrix.
"""

from __future__ import annotations

import weakref
from typing import Any

_MEMOS: dict[int, tuple[weakref.ref, dict[str, Any]]] = {}


def memo_for(obj: Any) -> dict[str, Any]:
    """The memo of ``obj`` (an array or a matrix source); an empty, unshared dict if ``obj`` cannot be weakly referenced."""
    key = id(obj)
    hit = _MEMOS.get(key)
    if hit is not None and hit[0]() is obj:
        return hit[1]
    memo: dict[str, Any] = {}
    try:
        ref = weakref.ref(obj, lambda _, key=key: _MEMOS.pop(key, None))
    except TypeError:
        return memo
    _MEMOS[key] = (ref, memo)
    return memo
