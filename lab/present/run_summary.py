"""The short summary printed after ``lab analyze``: where results are and what is in them."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from lab.store import Run


def print_summary(run: Run, console: Console | None = None) -> None:
    """Print the run folder, the tables with row counts, and the updates read per checkpoint."""
    console = console or Console(stderr=False)
    manifest = run.manifest
    tables = Table(title=f"run {run.name}: {manifest.get('status')} in {manifest.get('seconds', 0):.1f} s")
    tables.add_column("table")
    tables.add_column("rows", justify="right")
    tables.add_column("file")
    for name, rows in manifest.get("tables", {}).items():
        tables.add_row(name, str(rows), str(run.table_path(name)))
    console.print(tables)

    deltas = run.table("deltas", columns=["checkpoint", "step", "kind", "rank_bound", "fro_norm", "note"])
    by_ckpt = deltas.groupby(["checkpoint", "kind"], sort=False, dropna=False).agg(
        step=("step", "first"), modules=("fro_norm", "size"), rank_bound=("rank_bound", "max"),
        mean_fro_norm=("fro_norm", "mean"))
    summary = Table(title="updates read")
    for col in ("checkpoint", "step", "kind", "modules", "max rank bound", "mean ‖ΔW‖_F"):
        summary.add_column(col, justify="left" if col in ("checkpoint", "kind") else "right")
    for (ckpt, kind), row in by_ckpt.iterrows():
        step = "" if row.step != row.step or row.step is None else str(int(row.step))
        summary.add_row(str(ckpt), step, str(kind), str(int(row.modules)), str(int(row.rank_bound)),
                        f"{row.mean_fro_norm:.4g}")
    console.print(summary)
    for note, count in deltas.note[deltas.note.fillna("") != ""].value_counts().items():
        console.print(f"note ({count} rows of deltas): {note}")
    console.print(f"results: {run.path}   (load with lab.store.open_run({str(run.path)!r}).table('deltas'))")
