"""Durable parts: each finished unit's rows, written atomically, so an interrupted run can resume.

A part is a folder ``parts/<unit key>/`` laid out like a run folder: one ``<table>.parquet`` per table the unit
produced and ``unit.json`` (label, seconds, worker). It is written under a temporary name
(``parts/.tmp-<key>-<random>/``) and renamed into place when complete: a rename of a folder is
atomic on POSIX filesystems, so a part either exists whole or not at all, and a half-written one
(a kill, a full disk) is a ``.tmp-`` folder that is never read back and is removed on resume.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from lab.store.run import SUFFIX, table_path
from lab.store.schema import TABLES, Table

PARTS = "parts"
UNIT_JSON = "unit.json"
ARROW_TYPES = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}


def arrow_schema(table: Table) -> pa.Schema:
    """The pyarrow schema of a declared table, with each column's description as metadata."""
    return pa.schema(
        [pa.field(c.name, ARROW_TYPES[c.dtype], metadata={"description": c.description}) for c in table.columns]
    )


def arrow_table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of a declared table as an Arrow table with the declared columns in order.

    Raises ValueError for an undeclared table or a column the table does not declare (a probe
    bug, not a user error: it fails loudly).
    """
    if name not in TABLES:
        raise ValueError(f"table {name!r} is not declared in lab/store/schema.py")
    table = TABLES[name]
    declared = set(table.names)
    for row in rows:
        extra = set(row) - declared
        if extra:
            raise ValueError(f"table {name!r} has no column(s) {sorted(extra)}; declare them in lab/store/schema.py")
    columns = {c: [row.get(c) for row in rows] for c in table.names}
    return pa.Table.from_pydict(columns, schema=arrow_schema(table))


class Parts:
    """The finished units of one run folder."""

    def __init__(self, run_folder: Path) -> None:
        self.root = Path(run_folder) / PARTS

    def done(self) -> set[str]:
        """Keys of the units whose part is complete."""
        if not self.root.is_dir():
            return set()
        return {p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")}

    def clean(self) -> None:
        """Remove half-written parts left by an interrupted run."""
        if self.root.is_dir():
            for p in self.root.iterdir():
                if p.name.startswith(".tmp-"):
                    shutil.rmtree(p, ignore_errors=True)

    def write(self, key: str, rows: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> dict[str, int]:
        """Store one unit's rows (validated against the schema) atomically; returns rows per table."""
        tables = {name: arrow_table(name, table_rows) for name, table_rows in rows.items() if table_rows}
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            for name, table in tables.items():
                pq.write_table(table, table_path(tmp, name), compression="zstd")
            counts = {name: t.num_rows for name, t in tables.items()}
            (tmp / UNIT_JSON).write_text(json.dumps({"key": key, **meta, "rows": counts}, default=str))
            _fsync_folder(tmp)
            final = self.root / key
            if final.exists():  # the same unit finished twice (a retried task): keep the first
                shutil.rmtree(tmp)
            else:
                os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return counts

    def meta(self, key: str) -> dict[str, Any]:
        """The ``unit.json`` of a finished unit."""
        return json.loads((self.root / key / UNIT_JSON).read_text())

    def tables(self, keys: list[str]) -> list[str]:
        """Every table present in the parts of ``keys``, in first-seen order."""
        seen: dict[str, None] = {}
        for key in keys:
            for p in sorted((self.root / key).glob(f"*{SUFFIX}")):
                seen.setdefault(p.stem, None)
        return list(seen)

    def read(self, keys: list[str], table: str) -> Iterator[pa.Table]:
        """The parts of ``table`` for ``keys``, in that order (units without rows of it skipped)."""
        for key in keys:
            path = table_path(self.root / key, table)
            if path.is_file():
                yield pq.read_table(path)

    def remove(self) -> None:
        """Delete every part (after the final tables are in place)."""
        shutil.rmtree(self.root, ignore_errors=True)


def _fsync_folder(folder: Path) -> None:
    """Flush the part's files to disk before it is renamed into place (a crash keeps it whole or absent)."""
    for p in folder.iterdir():
        with open(p, "rb") as f:
            os.fsync(f.fileno())
