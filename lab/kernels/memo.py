"""What one probe computed about a matrix, kept for the other probes of the same unit.

The entanglement probe's row|column cut is the Gram matrix of ΔW's smaller side, whose
eigenvalues are σ²: the spectra probe needs exactly those, and for a streamed ΔW the Gram itself
(one pass over the files). A memo is a dict attached to the matrix object (the Delta's array or
source, the same object for every probe of a unit) through a weak reference, so it lives exactly
as long as the matrix does and is never found again for another matrix.

Entries made by :func:`pure` (keys starting ``pure:``) are functions of the matrix's values alone
and of the parameters their key names (not of which other probe ran first): for a base weight W,
the engine keeps those on disk, so the checkpoints of a sweep decompose each W once
(:mod:`lab.engine.basecache`). The other entries (a Gram a probe left for the next one) stay in
this process, for this matrix object.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

_MEMOS: dict[int, tuple[weakref.ref, dict[str, Any]]] = {}


def memo_for(obj: Any) -> dict[str, Any]:
    """The memo of ``obj`` (an array or a matrix source); an empty, unshared dict if ``obj`` cannot be weakly referenced."""
    key = id(obj)
    hit = _MEMOS.get(key)
    if hit is not None and hit[0]() is obj:
        return hit[1]
    memo: dict[str, Any] = {}
    try:
        # the dict is bound here: at interpreter exit the module's globals are None when the last
        # objects die, and the callback would print "Exception ignored in ..." for each of them
        ref = weakref.ref(obj, lambda _, key=key, memos=_MEMOS: memos.pop(key, None))
    except TypeError:
        return memo
    _MEMOS[key] = (ref, memo)
    return memo


PURE = "pure:"


def pure(obj: Any, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()``, kept in ``obj``'s memo under ``pure:<key>``: the caller promises the value depends
    only on ``obj``'s values and on what ``key`` names (so it may be kept across runs for a base W)."""
    memo = memo_for(obj)
    name = PURE + key
    if name not in memo:
        memo[name] = compute()
    return memo[name]
