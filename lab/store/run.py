"""Reading runs back: the manifest and the tables as DataFrames, reading only what is asked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import pyarrow.parquet as pq

if TYPE_CHECKING:  # pandas is imported where a table is read: `lab analyze` writes without it
    import pandas as pd

from lab.errors import InputError
from lab.store.manifest import MANIFEST, read_manifest

SUFFIX = ".parquet"  # one file per table: NAME.parquet in the run folder


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

    def timings(self) -> pd.DataFrame:
        """One row per unit of work: key, label (checkpoint: module), seconds, CPU seconds (the process's,
        all its threads, while the unit ran), the worker that ran it, and for module units with the base
        cache the entries about W found stored (``cache_hits``) and stored by the unit (``cache_stored``).

        ``run.timings().nlargest(10, "seconds")`` lists the slowest modules; grouping the module units by
        the label's checkpoint gives what each checkpoint of a sweep cost. Empty for a run that did
        not complete (its units are recorded when the tables are written). Missing values (runs made
        before a column existed) are NaN.
        """
        units = [{**u, "cache_hits": (u.get("base_cache") or {}).get("hits"),
                  "cache_stored": (u.get("base_cache") or {}).get("stored")} for u in self.manifest.get("units", [])]
        columns = ["key", "label", "seconds", "cpu_seconds", "worker", "cache_hits", "cache_stored"]
        import pandas as pd

        return pd.DataFrame(units, columns=columns)

    def tables(self) -> list[str]:
        """Names of the tables present (written completely) in this run."""
        return sorted(p.name[: -len(SUFFIX)] for p in self.path.glob(f"*{SUFFIX}"))

    def table_path(self, name: str) -> Path:
        """Where table ``name`` of this run lives (the file may not exist)."""
        return table_path(self.path, name)

    def has_table(self, name: str) -> bool:
        """Whether this run computed table ``name`` (a complete file is present)."""
        return self.table_path(name).is_file()

    def columns(self, name: str) -> list[str]:
        """The columns stored in table ``name``, from the parquet footer (no data read)."""
        return list(pq.read_schema(_computed(self.path, name)).names)

    def rows(self, name: str) -> int:
        """The row count of table ``name``, from the parquet footer (no data read)."""
        return pq.ParquetFile(_computed(self.path, name)).metadata.num_rows

    def table(self, name: str, columns: Sequence[str] | None = None, filters: list | None = None) -> pd.DataFrame:
        """One table as a DataFrame (see :func:`load_table`)."""
        return load_table(self.path, name, columns=columns, filters=filters)


def table_path(run_dir: str | Path, name: str) -> Path:
    """Where table ``name`` of the run in ``run_dir`` lives (the file may not exist)."""
    return Path(run_dir) / f"{name}{SUFFIX}"


def _computed(run_dir: str | Path, name: str) -> Path:
    """The path of a table the run computed; an InputError naming the file when it did not."""
    path = table_path(run_dir, name)
    if not path.is_file():
        raise InputError(f"{path}: table {name!r} was not computed in this run")
    return path


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
    return pq.read_table(_computed(run_dir, name), columns=list(columns) if columns else None, filters=filters).to_pandas()
