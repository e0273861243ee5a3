"""Reading tables across the runs of a results folder, only the columns and rows asked for.

The dashboard wraps these in Streamlit's cache; the report calls them directly. Where a table
lives and what it holds is the store's knowledge (:class:`lab.store.Run`); what is added here is
tolerance: columns or filters naming a column a table does not have (an older run, a table that
grew since) are dropped rather than failing, so one results folder can hold runs from several
lab versions.

Within ``with read_once():`` (the report's build) each table of each run is read from disk once,
whole, and every later read selects its columns and rows from that copy in memory, with the same
filter semantics as the file read (pyarrow's expression from the same tuples).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd

from lab.store import Run, list_runs

# the deltas table's identifying columns: one row per module update, what pages choose modules from
INDEX_COLUMNS = ["run", "checkpoint", "step", "module", "layer", "role", "kind", "rank_bound"]

# (run folder, table) -> the whole table as read from disk, while a read_once block is open
_TABLES: ContextVar[dict | None] = ContextVar("lab_present_tables", default=None)


@contextmanager
def read_once(tables: dict | None = None) -> Iterator[None]:
    """A block within which each run's table is read from disk once (kept whole in memory until the block ends).

    ``tables``: where the copies are kept, to share them between blocks (a report worker's tasks); by
    default a new dict, or the enclosing block's (nested blocks share the outer copies)."""
    if tables is None:
        tables = {} if _TABLES.get() is None else _TABLES.get()
    token = _TABLES.set(tables)
    try:
        yield
    finally:
        _TABLES.reset(token)


def read(run: Run, table: str, columns: Sequence[str] | None = None,
         filters: Sequence[tuple] | None = None) -> pd.DataFrame:
    """One run's table, keeping only the columns and filters it can answer.

    ``filters`` is a flat list of ``(column, op, value)`` tuples, all of which must hold (pyarrow's
    conjunctive form). An empty DataFrame comes back when the run did not compute the table.
    """
    if not run.has_table(table):
        return pd.DataFrame(columns=list(columns or []))
    tables = _TABLES.get()
    whole = None
    if tables is not None:
        key = (str(Path(run.path).resolve()), table)
        if key not in tables:
            tables[key] = _whole(run, table)
        whole = tables[key]
    stored = set(whole.column_names if whole is not None else run.columns(table))
    cols = [c for c in columns if c in stored] if columns else None
    kept = [f for f in (filters or []) if f[0] in stored]
    if whole is None:
        return run.table(table, columns=cols, filters=kept or None)
    import pyarrow.parquet as pq

    if kept:
        whole = whole.filter(pq.filters_to_expression(kept))
    return (whole.select(cols) if cols else whole).to_pandas()


def _whole(run: Run, table: str):
    """Every column and row of one run's table, as a pyarrow Table."""
    import pyarrow.parquet as pq

    return pq.read_table(run.table_path(table))


def read_runs(runs: Sequence[Run], table: str, columns: Sequence[str] | None = None,
              filters: Sequence[tuple] | None = None) -> pd.DataFrame:
    """``table`` from every run that has it, stacked (each row keeps its ``run`` column)."""
    frames = [read(run, table, columns, filters) for run in runs if run.has_table(table)]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=list(columns or []))
    return pd.concat(frames, ignore_index=True)


def computed(runs: Sequence[Run], table: str) -> bool:
    """Whether any of the runs computed ``table``."""
    return any(run.has_table(table) for run in runs)


def runs_in(results_dir: str | Path) -> list[Run]:
    """The runs of a results folder, sorted by name (a run folder itself counts as one run)."""
    return sorted(list_runs(results_dir), key=lambda r: r.name)


def run_methods(runs: Sequence[Run]) -> dict[str, str]:
    """Each run's fine-tuning method (:func:`methods`), read from its ``deltas`` table."""
    frames = [read(run, "deltas", ["checkpoint", "kind"]).assign(run=run.name) for run in runs if run.has_table("deltas")]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "checkpoint", "kind"])
    return methods(rows, [run.name for run in runs])


def methods(rows: pd.DataFrame, names: Sequence[str]) -> dict[str, str]:
    """Each named run's fine-tuning method from ``deltas`` rows (run, checkpoint, kind): the ``kind`` of
    its measured updates (lora, full, dora, loha, ...), several joined by "+" in sorted order (a folder
    of adapters of different types), "" when the run has none. The seeded controls are not a method."""
    if rows.empty or "kind" not in rows.columns:
        return {name: "" for name in names}
    rows = rows[rows["checkpoint"] != "controls"].dropna(subset=["kind"])
    kinds = rows.groupby("run")["kind"].agg(lambda k: "+".join(sorted(set(map(str, k)))))
    return {name: str(kinds.get(name, "")) for name in names}
