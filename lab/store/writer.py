"""Writing a run: a durable record per finished unit, then one parquet file per table, plus the manifest.

The run folder is created with ``manifest.json`` saying ``incomplete``. Each finished unit is a
part (:mod:`lab.store.parts`); :meth:`RunWriter.finish` concatenates the parts table by table in
the plan's order (so the tables do not depend on which worker finished first, or on whether the
run was interrupted and resumed), writes each table under ``NAME.parquet.partial`` and renames it
into place, records per-unit timings, and only then marks the manifest ``complete``. A failed or
interrupted run keeps its parts and stays ``incomplete``, so ``--resume`` can finish it.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lab.errors import LabError, RunExistsError
from lab.store.manifest import MANIFEST, now, read_manifest, write_manifest
from lab.store.parts import Parts, arrow_schema
from lab.store.run import table_path
from lab.store.schema import TABLES

PARTIAL = ".partial"
ROW_GROUP = 1 << 16  # rows gathered from the parts before a row group is written: few groups, bounded memory


class RunWriter:
    """Creates (or, resuming, reopens) ``out/name/``, stores finished units, and finishes the run."""

    def __init__(self, out: Path, name: str, *, overwrite: bool = False, resume: bool = False):
        self.folder = Path(out) / name
        self.name = name
        self.parts = Parts(self.folder)
        self._t0 = time.perf_counter()
        if resume:
            if not (self.folder / MANIFEST).is_file():
                raise LabError(f"{self.folder}: no run to resume (no {MANIFEST}); run without --resume")
            self.manifest: dict[str, Any] = read_manifest(self.folder)
            self.parts.clean()
            self.manifest.update(status="incomplete", resumed=now())
            self.manifest.pop("error", None)
        else:
            if self.folder.exists():
                if not (self.folder / MANIFEST).is_file():
                    raise RunExistsError(f"{self.folder}: exists but is not a lab run folder (no {MANIFEST}); refusing to replace it")
                if not overwrite:
                    hint = " or --resume to finish it" if read_manifest(self.folder).get("status") != "complete" else ""
                    raise RunExistsError(f"{self.folder}: run folder exists; pass --overwrite to replace it{hint}, "
                                         "or --run NAME to choose another name")
                shutil.rmtree(self.folder)
            self.folder.mkdir(parents=True)
            self.manifest = {"run": name, "status": "incomplete", "started": now()}
        write_manifest(self.folder, self.manifest)

    def update_manifest(self, **fields: Any) -> None:
        self.manifest.update(fields)
        write_manifest(self.folder, self.manifest)

    def add_unit(self, key: str, rows: dict[str, list[dict[str, Any]]], **meta: Any) -> None:
        """Store one finished unit's rows durably (one whole journal record; see :mod:`lab.store.parts`)."""
        self.parts.write(key, rows, meta)

    def finish(self, order: list[str], **fields: Any) -> None:
        """Write every table from the parts of ``order`` (the plan's unit keys), then mark complete."""
        done = self.parts.done()
        missing = [k for k in order if k not in done]
        if missing:
            raise RuntimeError(f"{len(missing)} unit(s) have no stored rows; cannot finish the run")
        counts = {}
        for table in self.parts.tables(order):
            counts[table] = self._write_table(table, order)
        timings = []
        for key in order:
            meta = self.parts.meta(key)
            timings.append({"key": key, "label": meta.get("label"), "seconds": meta.get("seconds"),
                            "worker": meta.get("worker"),
                            **{k: meta[k] for k in ("cpu_seconds", "base_cache") if meta.get(k) is not None}})
        self.update_manifest(**fields, tables=dict(sorted(counts.items())), units=timings, status="complete",
                             ended=now(), seconds=round(self.manifest.get("seconds_before", 0.0) + time.perf_counter() - self._t0, 3))
        self.manifest.pop("seconds_before", None)
        write_manifest(self.folder, self.manifest)
        self.parts.remove()

    def _write_table(self, table: str, order: list[str]) -> int:
        schema = arrow_schema(TABLES[table])
        final = table_path(self.folder, table)
        partial = final.with_name(final.name + PARTIAL)
        rows = 0
        try:
            with pq.ParquetWriter(partial, schema, compression="zstd") as out:
                batch: list = []
                waiting = 0
                for part in self.parts.read(order, table):
                    batch.append(part.cast(schema))
                    rows += part.num_rows
                    waiting += part.num_rows
                    if waiting >= ROW_GROUP:
                        out.write_table(pa.concat_tables(batch))
                        batch, waiting = [], 0
                if batch:
                    out.write_table(pa.concat_tables(batch))
            os.replace(partial, final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return rows

    def fail(self, error: BaseException) -> None:
        """Mark the run incomplete with the error; finished parts stay for ``--resume``."""
        message = "interrupted" if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}: {error}"
        elapsed = self.manifest.get("seconds_before", 0.0) + time.perf_counter() - self._t0
        self.update_manifest(status="incomplete", error=message, ended=now(), seconds_before=round(elapsed, 3),
                             units_done=len(self.parts.done()))


def upsert_table(results: Path, run: str, name: str, rows: list[dict[str, Any]], key: str) -> tuple[Path, pa.Table]:
    """Add ``rows`` to RESULTS/RUN/NAME.parquet, replacing the stored rows whose ``key`` column holds a
    value one of the new rows holds (the rows of the same merged or squeezed adapter).

    The tables that ``lab merge`` and ``lab squeeze`` grow one output at a time are written here, as
    ``lab analyze``'s are by :class:`RunWriter`: under ``NAME.parquet.partial`` and renamed into
    place, so an interrupted write never leaves a table that looks complete; then ``manifest``
    (when given) is written. Returns the path and the table written.
    """
    from lab.store.parts import arrow_table

    folder = Path(results) / run
    folder.mkdir(parents=True, exist_ok=True)
    final = table_path(folder, name)
    table = arrow_table(name, rows)
    if final.is_file():
        old = pq.read_table(final)
        replaced = {r[key] for r in rows}
        keep = [i for i, value in enumerate(old.column(key).to_pylist()) if value not in replaced]
        table = pa.concat_tables([old.take(keep).cast(table.schema), table])
    partial = final.with_name(final.name + PARTIAL)
    try:
        pq.write_table(table, partial)
        os.replace(partial, final)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return final, table


def is_complete(folder: Path) -> bool:
    """Whether a run folder's manifest says the run completed."""
    try:
        return read_manifest(folder).get("status") == "complete"
    except (OSError, ValueError):
        return False
