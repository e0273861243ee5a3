"""Writing a run: one parquet file per table, streamed in row groups and made visible
atomically (``table.parquet.partial`` renamed on success), plus the manifest."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from lab.errors import RunExistsError
from lab.store.manifest import MANIFEST, now, read_manifest, write_manifest
from lab.store.schema import TABLES, Table

ARROW_TYPES = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
PARTIAL = ".partial"


def arrow_schema(table: Table) -> pa.Schema:
    """The pyarrow schema of a declared table, with each column's description as metadata."""
    return pa.schema(
        [pa.field(c.name, ARROW_TYPES[c.dtype], metadata={"description": c.description}) for c in table.columns]
    )


class _TableSink:
    """Buffers rows of one table and streams them to ``NAME.parquet.partial`` in row groups."""

    def __init__(self, folder: Path, table: Table, flush_rows: int):
        self.table = table
        self.schema = arrow_schema(table)
        self.final = folder / f"{table.name}.parquet"
        self.partial = folder / f"{table.name}.parquet{PARTIAL}"
        self.flush_rows = flush_rows
        self.buffer: list[dict[str, Any]] = []
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        declared = set(self.table.names)
        for row in rows:
            extra = set(row) - declared
            if extra:  # a probe bug, not a user error: fail loudly
                raise ValueError(f"table {self.table.name!r} has no column(s) {sorted(extra)}; declare them in lab/store/schema.py")
            self.buffer.append(row)
        if len(self.buffer) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        columns = {name: [row.get(name) for row in self.buffer] for name in self.table.names}
        batch = pa.Table.from_pydict(columns, schema=self.schema)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.partial, self.schema, compression="zstd")
        self.writer.write_table(batch)
        self.rows += len(self.buffer)
        self.buffer.clear()

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()
            os.replace(self.partial, self.final)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.partial.unlink(missing_ok=True)


class RunWriter:
    """Creates ``out/name/``, marks it incomplete, collects rows per table, and on
    :meth:`finish` renames the tables into place and marks the manifest complete.

    On :meth:`fail` the partial tables are removed and the manifest says ``incomplete`` with
    the error, so a failed run is never passed off as complete.
    """

    def __init__(self, out: Path, name: str, *, overwrite: bool = False, flush_rows: int = 50_000):
        self.folder = Path(out) / name
        self.name = name
        self.flush_rows = flush_rows
        if self.folder.exists():
            if not overwrite:
                raise RunExistsError(f"{self.folder}: run folder exists; pass --overwrite to replace it or --run NAME to choose another name")
            if not (self.folder / MANIFEST).is_file():
                raise RunExistsError(f"{self.folder}: exists but is not a lab run folder (no {MANIFEST}); refusing to replace it")
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        self._t0 = time.perf_counter()
        self.manifest: dict[str, Any] = {"run": name, "status": "incomplete", "started": now()}
        self.sinks: dict[str, _TableSink] = {}
        write_manifest(self.folder, self.manifest)

    def update_manifest(self, **fields: Any) -> None:
        self.manifest.update(fields)
        write_manifest(self.folder, self.manifest)

    def add(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        """Append rows to a declared table."""
        if table not in self.sinks:
            if table not in TABLES:
                raise ValueError(f"table {table!r} is not declared in lab/store/schema.py")
            self.sinks[table] = _TableSink(self.folder, TABLES[table], self.flush_rows)
        self.sinks[table].add(rows)

    def finish(self, **fields: Any) -> None:
        for sink in self.sinks.values():
            sink.close()
        tables = {name: sink.rows for name, sink in sorted(self.sinks.items())}
        self.update_manifest(
            **fields, tables=tables, status="complete", ended=now(), seconds=round(time.perf_counter() - self._t0, 3)
        )

    def fail(self, error: BaseException) -> None:
        for sink in self.sinks.values():
            sink.abort()
        self.update_manifest(status="incomplete", error=f"{type(error).__name__}: {error}", ended=now(),
                             seconds=round(time.perf_counter() - self._t0, 3))


def is_complete(folder: Path) -> bool:
    """Whether a run folder's manifest says the run completed."""
    try:
        return read_manifest(folder).get("status") == "complete"
    except (OSError, ValueError):
        return False
