"""Reading tables across the runs of a results folder, only the columns and rows asked for.

The dashboard wraps these in Streamlit's cache; the report calls them directly. Columns or
filters naming a column a table does not have (an older run, a table that grew since) are
dropped rather than failing, so one results folder can hold runs from several lab versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow.parquet as pq

from lab.store import Run, list_runs, load_table


def table_path(run_dir: str | Path, table: str) -> Path:
    """Where a run's table lives (it may not exist)."""
    return Path(run_dir) / f"{table}.parquet"


def has_table(run_dir: str | Path, table: str) -> bool:
    """Whether the run computed ``table``."""
    return table_path(run_dir, table).is_file()


def table_columns(run_dir: str | Path, table: str) -> list[str]:
    """The columns stored in a run's table, read from the parquet footer (no data read)."""
    return list(pq.read_schema(table_path(run_dir, table)).names)


def table_rows(run_dir: str | Path, table: str) -> int:
    """Row count of a run's table, from the parquet footer."""
    return pq.ParquetFile(table_path(run_dir, table)).metadata.num_rows


def read(run_dir: str | Path, table: str, columns: Sequence[str] | None = None,
         filters: Sequence[tuple] | None = None) -> pd.DataFrame:
    """One run's table (through ``lab.store.load_table``), keeping only columns and filters it can answer.

    ``filters`` is a flat list of ``(column, op, value)`` tuples, all of which must hold (pyarrow's
    conjunctive form). An empty DataFrame comes back when the run did not compute the table.
    """
    if not has_table(run_dir, table):
        return pd.DataFrame(columns=list(columns or []))
    stored = set(table_columns(run_dir, table))
    cols = [c for c in columns if c in stored] if columns else None
    kept = [f for f in (filters or []) if f[0] in stored]
    return load_table(run_dir, table, columns=cols, filters=kept or None)


def read_runs(runs: Sequence[Run], table: str, columns: Sequence[str] | None = None,
              filters: Sequence[tuple] | None = None) -> pd.DataFrame:
    """``table`` from every run that has it, stacked (each row keeps its ``run`` column)."""
    frames = [read(run.path, table, columns, filters) for run in runs if has_table(run.path, table)]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=list(columns or []))
    return pd.concat(frames, ignore_index=True)


def runs_in(results_dir: str | Path) -> list[Run]:
    """The runs of a results folder, sorted by name (a run folder itself counts as one run)."""
    return sorted(list_runs(results_dir), key=lambda r: r.name)
