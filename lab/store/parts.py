"""Durable parts: each finished unit's rows, appended to one journal, so an interrupted run can resume.

The parts of a run live in ``parts/journal`` inside its run folder: one record per finished unit,
appended by the driver (the only process that writes) and flushed to disk (``fsync``) before the
next unit is recorded. A record is

    b"LABU" | header length (u32) | payload length (u64) | header (JSON) | payload | CRC-32 (u32)

with the unit's key, label, seconds, worker and row counts in the header, and each of its tables
as an Arrow IPC stream in the payload (the header gives each one's offset and length). A record
counts only when it is whole and its CRC matches, so a record torn by a kill, a crash or a full
disk is never read back; :meth:`Parts.clean` cuts it off before a resumed run appends again.

One journal instead of one folder of files per unit: recording a unit costs one write and one
``fsync`` (a few milliseconds), not six files, six ``fsync`` calls and a rename. With hundreds of
small units that difference is CPU the driver would otherwise take from the workers it shares the
machine with (``bench/RESULTS.md``, the sweep).
"""

from __future__ import annotations

import functools
import json
import mmap
import os
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from lab.store.schema import TABLES, Table

PARTS = "parts"
JOURNAL = "journal"
ARROW_TYPES = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}

_MAGIC = b"LABU"
_HEAD = struct.Struct("<4sIQ")  # magic, header length, payload length
_CRC = struct.Struct("<I")


@functools.lru_cache(maxsize=None)
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
    extra = set().union(*rows) - set(table.names)
    if extra:
        raise ValueError(f"table {name!r} has no column(s) {sorted(extra)}; declare them in lab/store/schema.py")
    return pa.Table.from_pylist(rows, schema=arrow_schema(table))  # a column a row lacks is null there


@dataclass(frozen=True)
class EncodedTable:
    """One table's rows of one unit, validated against the schema and serialised as an Arrow IPC stream.

    Made where the unit ran (:func:`encode`): on a Dask worker that takes the conversion off the driver,
    which then only appends the bytes to the journal.
    """

    rows: int
    stream: bytes


def encode(rows: dict[str, list[dict[str, Any]]], declared_only: bool = False) -> dict[str, EncodedTable]:
    """Each non-empty table of ``rows`` as an :class:`EncodedTable` (ValueError for undeclared tables or columns).

    ``declared_only``: leave the rows of tables this process does not know as they are (a Dask worker
    does not see the declarations of probes registered in the driver; the driver encodes those).
    """
    out = {}
    for name, table_rows in rows.items():
        if isinstance(table_rows, EncodedTable) or (declared_only and name not in TABLES):
            out[name] = table_rows
        elif table_rows:
            table = arrow_table(name, table_rows)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            out[name] = EncodedTable(table.num_rows, sink.getvalue().to_pybytes())
    return out


@dataclass(frozen=True)
class _Record:
    """Where one unit's tables lie in the journal, and its header."""

    header: dict[str, Any]
    tables: dict[str, tuple[int, int]]  # table -> (offset in the journal, length) of its Arrow IPC stream


class Parts:
    """The finished units of one run folder."""

    def __init__(self, run_folder: Path) -> None:
        self.root = Path(run_folder) / PARTS
        self.path = self.root / JOURNAL
        self._index: dict[str, _Record] = {}
        self._end = 0  # journal offset just after the last whole record
        self._scanned = -1  # journal size when it was last scanned

    # ---- reading the journal ----

    def _records(self) -> dict[str, _Record]:
        """Every whole record by key (the first, when a key occurs twice), rescanning when the file changed."""
        size = self.path.stat().st_size if self.path.is_file() else 0
        if size != self._scanned:
            self._index, self._end = _scan(self.path) if size else ({}, 0)
            self._scanned = size
        return self._index

    def done(self) -> set[str]:
        """Keys of the units whose record is whole."""
        return set(self._records())

    def meta(self, key: str) -> dict[str, Any]:
        """A finished unit's header: key, label, seconds, worker and rows per table."""
        return dict(self._records()[key].header)

    def tables(self, keys: list[str]) -> list[str]:
        """Every table present in the records of ``keys``, in first-seen order."""
        records = self._records()
        seen: dict[str, None] = {}
        for key in keys:
            for name in records[key].tables:
                seen.setdefault(name, None)
        return list(seen)

    def read(self, keys: list[str], table: str) -> Iterator[pa.Table]:
        """The parts of ``table`` for ``keys``, in that order (units without rows of it skipped)."""
        records = self._records()
        with pa.memory_map(str(self.path)) as source:
            for key in keys:
                span = records[key].tables.get(table)
                if span is not None:
                    source.seek(span[0])
                    yield pa.ipc.open_stream(source.read_buffer(span[1])).read_all()

    # ---- writing ----

    def clean(self) -> None:
        """Cut off a record left torn by an interrupted run, so that new records follow whole ones."""
        self._records()
        if self._scanned > self._end:  # the journal's size when scanned, beyond its last whole record
            with open(self.path, "r+b") as f:
                f.truncate(self._end)
                os.fsync(f.fileno())
            self._scanned = -1

    def write(self, key: str, rows: dict[str, list[dict[str, Any]] | EncodedTable], meta: dict[str, Any]) -> dict[str, int]:
        """Append one unit's rows (validated against the schema first, unless :func:`encode` did that
        where the unit ran) as one record, flushed to disk; returns rows per table. A unit already
        recorded (a retried task that finished twice) keeps its first record."""
        tables = encode(rows)
        counts = {name: t.rows for name, t in tables.items()}
        if key in self._records():
            return counts
        spans, at = {}, 0
        for name, table in tables.items():
            spans[name] = [at, len(table.stream)]
            at += len(table.stream)
        header = json.dumps({"key": key, **meta, "rows": counts, "tables": spans}, default=str).encode()
        payload = b"".join(t.stream for t in tables.values())
        crc = zlib.crc32(payload, zlib.crc32(header))
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            start = f.seek(0, os.SEEK_END)
            try:
                f.write(_HEAD.pack(_MAGIC, len(header), len(payload)) + header + payload + _CRC.pack(crc))
                f.flush()
                os.fsync(f.fileno())
            except BaseException:
                try:  # leave no torn record behind (on a full disk this may fail too: clean() cuts it on resume)
                    f.truncate(start)
                except OSError:
                    pass
                raise
        body = start + _HEAD.size + len(header)
        self._index[key] = _record(header, body)[1]  # read back as a scan would: the same header either way
        self._end = self._scanned = body + len(payload) + _CRC.size
        return counts

    def remove(self) -> None:
        """Delete every part (after the final tables are in place)."""
        shutil.rmtree(self.root, ignore_errors=True)
        self._index, self._end, self._scanned = {}, 0, -1


def _record(header: bytes, body: int) -> tuple[str, _Record]:
    """(key, record) from a record's JSON header and the journal offset where its payload starts."""
    raw = json.loads(header)
    spans = {name: (body + int(o), int(n)) for name, (o, n) in raw.pop("tables").items()}
    return str(raw["key"]), _Record(raw, spans)


def _scan(path: Path) -> tuple[dict[str, _Record], int]:
    """The whole records of a journal by key, and the offset after the last of them; stops at the
    first record that is torn or does not check out (nothing after it was written by a whole run)."""
    index: dict[str, _Record] = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        at, size = 0, len(m)
        while at + _HEAD.size <= size:
            magic, n_header, n_payload = _HEAD.unpack_from(m, at)
            body = at + _HEAD.size + n_header
            end = body + n_payload + _CRC.size
            if magic != _MAGIC or end > size:
                break
            header = m[at + _HEAD.size: body]
            if zlib.crc32(m[body: body + n_payload], zlib.crc32(header)) != _CRC.unpack_from(m, end - _CRC.size)[0]:
                break
            try:
                key, record = _record(header, body)
            except (ValueError, KeyError, TypeError, AttributeError):
                break
            index.setdefault(key, record)
            at = end
    return index, at
