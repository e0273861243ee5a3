"""Probe options: typed dataclasses built from the CLI's ``NAME.FIELD=VALUE`` or a dict, and back.

Each probe declares its options as a frozen dataclass (see :mod:`lab.probes.registry`). This
module turns user input into those objects with the field's type checked (``int``, ``float``,
``bool``, ``str``, optional values, and tuples of strings given as ``a,b``), and turns them back
into plain JSON for the manifest, so a run records exactly which options produced its numbers.

>>> from lab.probes import available
>>> build_options(available().values(), {"spectra": {"top_k": "8"}})["spectra"].top_k
8
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Iterable, Mapping

from lab.errors import LabError
from lab.probes.registry import Probe


class OptionError(LabError):
    """An option names no probe or field, or its value does not fit the field's type."""


def parse_assignments(assignments: Iterable[str]) -> dict[str, dict[str, str]]:
    """``["spectra.top_k=8", ...]`` as ``{"spectra": {"top_k": "8"}}`` (values still text)."""
    out: dict[str, dict[str, str]] = {}
    for item in assignments:
        name, eq, value = item.partition("=")
        probe, dot, key = name.strip().partition(".")
        if not eq or not dot or not probe or not key:
            raise OptionError(f"--set {item!r}: expected PROBE.OPTION=VALUE, e.g. spectra.top_k=8")
        out.setdefault(probe, {})[key.strip()] = value.strip()
    return out


def build_options(probes: Iterable[Probe], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every probe's options object: its defaults, updated from ``given`` (probe -> dict or object).

    Raises OptionError for a probe that is not among ``probes``, an unknown field or a value of
    the wrong type, naming the option.
    """
    probes = {p.name: p for p in probes}
    given = dict(given or {})
    unknown = sorted(set(given) - set(probes))
    if unknown:
        raise OptionError(f"options for {', '.join(unknown)}, which {'is' if len(unknown) == 1 else 'are'} not among the probes run "
                          f"({', '.join(probes)})")
    out = {}
    for name, probe in probes.items():
        value = given.get(name)
        if isinstance(value, probe.options):
            out[name] = value
            continue
        fields = {f.name: f for f in dataclasses.fields(probe.options)}
        values = {}
        for key, raw in (value or {}).items():
            if key not in fields:
                choices = ", ".join(fields) or "none"
                raise OptionError(f"probe {name!r} has no option {key!r} (options: {choices})")
            values[key] = _convert(f"{name}.{key}", raw, _hints(probe.options)[key])
        try:
            out[name] = probe.options(**values)
        except OptionError:
            raise
        except (TypeError, ValueError, LabError) as e:  # an options class's own checks (entanglement's targets)
            raise OptionError(f"options of probe {name!r}: {e}") from None
    return out


def as_json(options: Any) -> dict[str, Any]:
    """An options object as plain JSON (tuples as lists), for the manifest."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()}


def describe(probe: Probe) -> list[tuple[str, str, str, str]]:
    """(name, type, default, help) for every option of ``probe``, for ``lab probes``."""
    hints = _hints(probe.options)
    out = []
    for f in dataclasses.fields(probe.options):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append((f.name, _type_name(hints[f.name]), _show(default), f.metadata.get("help", "")))
    return out


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    if _is_optional(tp):
        return f"{_type_name(next(a for a in args if a is not type(None)))} or none"
    if typing.get_origin(tp) is tuple:
        return f"list of {_type_name(args[0])}"
    return getattr(tp, "__name__", str(tp))


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _convert(where: str, raw: Any, tp: Any) -> Any:
    """``raw`` (text from the CLI, or a Python value) as a value of type ``tp``."""
    if _is_optional(tp):
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "")):
            return None
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is tuple:
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        inner = typing.get_args(tp)[0]
        return tuple(_convert(where, item.strip() if isinstance(item, str) else item, inner) for item in items
                     if not (isinstance(item, str) and not item.strip()))
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return raw.lower() in ("true", "1", "yes", "on")
        raise OptionError(f"{where}={raw!r}: expected true or false")
    if tp is int:
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise OptionError(f"{where}={raw!r}: expected an integer")
        try:
            return int(raw)
        except ValueError:
            raise OptionError(f"{where}={raw!r}: expected an integer") from None
    if tp is float:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise OptionError(f"{where}={raw!r}: expected a number") from None
        if not math.isfinite(value):
            raise OptionError(f"{where}={raw!r}: expected a finite number")
        return value
    if tp is str:
        return str(raw)
    raise OptionError(f"{where}: options of type {tp} cannot be set from text")
