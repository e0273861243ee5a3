"""Every probe family the reader meets, in reading order: the built-in ones (one module each, here)
and those plugin files register.

Adding a family is one module (``FAMILY = Family(...)``: :class:`lab.present.family.Family`) listed
in :data:`BUILTIN`, or, from a plugin file, one call to :func:`register`. The report's sections and
the dashboard's pages are the declared families (:func:`families`); neither has code of its own for
any family.
"""

from __future__ import annotations

import warnings
from typing import Sequence

from lab.errors import InputError
from lab.plugins import load_plugins
from lab.present.family import Family
from lab.store import Run
from lab.present.families import (attention, deltas, entanglement, esd, forgetting, intruders, merge, msu, msu_pairs,
                                  no_hair, similarity, spectra, thresholds)

BUILTIN: tuple[Family, ...] = tuple(m.FAMILY for m in (
    deltas, entanglement, spectra, esd, intruders, attention, no_hair, forgetting, thresholds, msu, msu_pairs,
    similarity, merge))

_REGISTERED: dict[str, Family] = {f.key: f for f in BUILTIN}


def register(family: Family) -> Family:
    """Add a family (a plugin's) after the built-in ones, or replace the one with its key; returns it."""
    if not isinstance(family, Family):
        raise TypeError(f"register() takes a lab.present.family.Family, not {type(family).__name__}")
    _REGISTERED[family.key] = family
    return family


def registered() -> list[Family]:
    """Every family, declared or not, in reading order (built-in ones first, then plugins' in registration order)."""
    return list(_REGISTERED.values())


def families() -> list[Family]:
    """The families whose first table the schema declares, in reading order: what the report has sections
    for and the dashboard has pages for (a family whose probe has not landed has neither)."""
    return [f for f in _REGISTERED.values() if f.declared]


def by_key(key: str) -> Family:
    """The family called ``key`` (KeyError naming the known ones otherwise)."""
    try:
        return _REGISTERED[key]
    except KeyError:
        raise KeyError(f"no probe family {key!r}; known: {', '.join(_REGISTERED)}") from None


def load_recorded_plugins(runs: Sequence[Run]) -> list[str]:
    """Import the plugin files the runs were analysed with (their manifests' ``plugins``), so that the families
    and tables they register have their report sections and dashboard pages. A file that is gone or fails to
    import is skipped with a warning naming it."""
    names = []
    for path in dict.fromkeys(p["path"] for run in runs for p in run.manifest.get("plugins", []) or []):
        try:
            names += load_plugins([path])
        except InputError as e:
            warnings.warn(f"{e} (recorded by a run's manifest; its families have no page)", stacklevel=2)
    return names
