"""Cached, lazy reads for the dashboard: only the columns and rows a page asks for, cached by
Streamlit and invalidated when a table file changes (a re-run of ``lab analyze``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd
import streamlit as st

from dashboards import RESULTS_ENV
from lab.present import load
from lab.present.findings import summarize
from lab.present.sentences import FamilyFindings
from lab.store import Run

INDEX_COLUMNS = load.INDEX_COLUMNS  # the index the sidebar's filters offer (the report's pages read the same)


def results_dir() -> Path:
    """The results folder: $LAB_RESULTS_DIR (set by ``lab dashboard``), else the app's first argument
    (``streamlit run dashboards/app.py -- DIR``), else ./results."""
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV]).resolve()
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    return Path(args[0] if args else "results").resolve()


def stamp(run_dir: str, table: str) -> float:
    """The modification time of a run's table file (0 when absent): part of every cache key."""
    path = Run(Path(run_dir)).table_path(table)
    return path.stat().st_mtime if path.is_file() else 0.0


@st.cache_data(show_spinner=False, max_entries=256)
def _runs(results: str, changed: float) -> list[str]:
    return [str(r.path) for r in load.runs_in(results)]


def runs(results: Path) -> list[Run]:
    """The runs in the results folder (re-listed when the folder changes)."""
    changed = results.stat().st_mtime if results.is_dir() else 0.0
    return [Run(Path(p)) for p in _runs(str(results), changed)]


@st.cache_data(show_spinner=False, max_entries=512)
def _read(run_dir: str, table: str, columns: tuple | None, filters: tuple, changed: float) -> pd.DataFrame:
    return load.read(Run(Path(run_dir)), table, list(columns) if columns else None,
                     [(c, op, list(v) if isinstance(v, tuple) else v) for c, op, v in filters])


def read(runs: Sequence[Run], table: str, columns: Sequence[str] | None = None,
         filters: Sequence[tuple] = ()) -> pd.DataFrame:
    """``table`` of the given runs, stacked; ``filters`` are (column, op, value) tuples that all hold."""
    frozen = tuple((c, op, tuple(v) if isinstance(v, (list, set)) else v) for c, op, v in filters)
    cols = tuple(columns) if columns else None
    frames = [_read(str(r.path), table, cols, frozen, stamp(str(r.path), table))
              for r in runs if r.has_table(table)]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(columns or []))


def index(runs: Sequence[Run]) -> pd.DataFrame:
    """What the runs hold, one row per module update (the deltas table's identifying columns): the filters' options."""
    return read(runs, "deltas", INDEX_COLUMNS)


def run_methods(runs: Sequence[Run]) -> dict[str, str]:
    """Each run's fine-tuning method(s), from the cached deltas index (lab.present.load.methods)."""
    return load.methods(index(runs), [r.name for r in runs])


def computed(runs: Sequence[Run], table: str) -> bool:
    """Whether any of the runs computed ``table``."""
    return load.computed(runs, table)


@st.cache_data(show_spinner=False)
def row_count(run_dir: str, table: str, changed: float) -> int:
    """Rows in a run's table, from the parquet footer."""
    return Run(Path(run_dir)).rows(table)


@st.cache_data(show_spinner="Computing the findings…", max_entries=64)
def _findings(run_dirs: tuple[str, ...], stamps: tuple[float, ...]) -> list[FamilyFindings]:
    return summarize([Run(Path(d)) for d in run_dirs])


def findings(runs: Sequence[Run]) -> list[FamilyFindings]:
    """The findings of the runs (lab.present.findings.summarize), recomputed when any of their tables changes."""
    dirs = tuple(str(r.path) for r in runs)
    stamps = tuple(p.stat().st_mtime for d in dirs for p in sorted(Path(d).glob("*.parquet")))
    return _findings(dirs, stamps)
