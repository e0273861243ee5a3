"""The run store: one parquet table per probe family plus ``manifest.json`` per run folder."""

from lab.store.manifest import read_manifest
from lab.store.run import Run, list_runs, load_table, open_run
from lab.store.schema import TABLES
from lab.store.writer import RunWriter, is_complete

__all__ = ["Run", "RunWriter", "TABLES", "is_complete", "list_runs", "load_table", "open_run", "read_manifest"]
