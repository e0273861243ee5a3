"""Probes of the user's own: Python files that call ``lab.probes.register`` when imported.

``lab analyze --plugin my_probes.py`` imports the file under a module name of its own before the
run is planned, so its probes can be chosen with ``--probes`` and run here or on Dask workers
(where they travel by value, see :mod:`lab.engine.executors`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Iterable

from lab.errors import InputError


_LOADED: dict[Path, str] = {}  # every plugin file imported in this process -> its module name


def loaded() -> list[Path]:
    """The plugin files imported in this process, in the order they were first loaded (what a run records)."""
    return list(_LOADED)


def load_plugins(paths: Iterable[str | Path]) -> list[str]:
    """Import each plugin file once; returns the module names. InputError for a missing or failing file."""
    names = []
    for path in paths:
        path = Path(path).expanduser().resolve()
        if not path.is_file() or path.suffix != ".py":
            raise InputError(f"{path}: no such plugin file (expected a .py file that registers probes)")
        name = f"lab_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as e:  # the user's code: report it in one line, with where it failed
                del sys.modules[name]
                raise InputError(f"{path}: importing the plugin failed: {type(e).__name__}: {e}") from None
        _LOADED.setdefault(path, name)
        names.append(name)
    return names
