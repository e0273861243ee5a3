"""Reading runs back: the manifest and the tables as DataFrames, reading only what is asked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import pyarrow.parquet as pq

from lab.errors import InputError
from lab.store.manifest import MANIFEST, read_manifest


@dataclass
class Run:
    """A run folder: ``manifest.json`` and one ``TABLE.parquet`` per table."""

    path: Path

    @property
    def name(self) -> str:
        return self.manifest.get("run", self.path.name)

    @property
    def manifest(self) -> dict[str, Any]:
        return read_manifest(self.path)

    @property
    def complete(self) -> bool:
        return self.manifest.get("status") == "complete"

    def tables(self) -> list[str]:
        """Names of the tables present (written completely) in this run."""
        return sorted(p.name[: -len(".parquet")] for p in self.path.glob("*.parquet"))

    def table(self, name: str, columns: Sequence[str] | None = None, filters: list | None = None) -> pd.DataFrame:
        """One table as a DataFrame (see :func:`load_table`)."""
        return load_table(self.path, name, columns=columns, filters=filters)


def open_run(path: str | Path) -> Run:
    """The run stored in ``path`` (a folder holding ``manifest.json``)."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise InputError(f"{path}: not a lab run folder (no {MANIFEST})")
    return Run(path)


def list_runs(results_dir: str | Path) -> list[Run]:
    """The runs in a results folder (or the folder itself when it is one run), by name."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise InputError(f"{results_dir}: no such results folder")
    if (results_dir / MANIFEST).is_file():
        return [Run(results_dir)]
    return [Run(p.parent) for p in sorted(results_dir.glob(f"*/{MANIFEST}"))]


def load_table(run_dir: str | Path, name: str, columns: Sequence[str] | None = None,
               filters: list | None = None) -> pd.DataFrame:
    """Table ``name`` of a run, reading only ``columns`` and the row groups that ``filters`` keep.

    ``filters`` uses pyarrow's form, e.g. ``[("role", "in", ["q", "v"]), ("layer", "<", 3)]``.
    """
    path = Path(run_dir) / f"{name}.parquet"
    if not path.is_file():
        raise InputError(f"{path}: table {name!r} was not computed in this run")
    return pq.read_table(path, columns=list(columns) if columns else None, filters=filters).to_pandas()
