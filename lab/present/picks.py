"""Which rows, checkpoints and modules a sentence or a figure is about: a run's last checkpoint in
training order, its measured rows, the module shown for every run, one module per role at the
middle layer. Shared by every family's findings, headline figure and section.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from lab.present import load
from lab.store import Run

MAX_ROLES = 4  # a section's per-role figures show at most this many roles


def last_checkpoint(rows: pd.DataFrame) -> str | None:
    """The run's last checkpoint in training order among ``rows`` (largest step, then name)."""
    if rows.empty or "checkpoint" not in rows.columns:
        return None
    keys = rows[["checkpoint"] + (["step"] if "step" in rows.columns else [])].drop_duplicates("checkpoint")
    step = keys["step"].astype(float).fillna(-1.0) if "step" in keys.columns else pd.Series(-1.0, index=keys.index)
    order = sorted(zip(step, keys["checkpoint"].astype(str)))
    return order[-1][1]


def measured(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of real checkpoints: no controls (source random, random_lora), no base weights, no 'controls' checkpoint."""
    keep = pd.Series(True, index=rows.index)
    if "source" in rows.columns:
        keep &= rows["source"].isna() | (rows["source"] == "delta")
    if "checkpoint" in rows.columns:
        keep &= rows["checkpoint"] != "controls"
    return rows[keep]


def at_last(rows: pd.DataFrame) -> tuple[str | None, pd.DataFrame]:
    """(last checkpoint, its measured rows) of one run's rows."""
    rows = measured(rows)
    ck = last_checkpoint(rows)
    return ck, rows[rows["checkpoint"].astype(str) == ck] if ck is not None else rows.iloc[0:0]


ROLE_PREFERENCE = ("q", "v", "k", "o")


def last_rows(run: Run, table: str, columns=None, filters=None) -> pd.DataFrame:
    """A run's rows of ``table`` at its last checkpoint (measured rows only)."""
    rows = measured(load.read(run, table, columns, filters))
    ck = last_checkpoint(rows)
    return rows[rows["checkpoint"].astype(str) == ck] if ck is not None else rows


def last_rows_of(runs: Sequence[Run], table: str, columns=None, filters=None) -> pd.DataFrame:
    """Every run's rows of ``table`` at its own last checkpoint (measured rows only), stacked; an empty frame when
    no run has the table."""
    frames = [last_rows(r, table, columns, filters) for r in runs if r.has_table(table)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def representative_module(runs: Sequence[Run], table: str) -> str | None:
    """A module to show for every run: one all of them have if any (else the first run's), preferring the
    q projection, at the middle of its layers."""
    per_run = [set(last_rows(r, table, ["checkpoint", "step", "module", "source"])["module"].dropna())
               for r in runs if r.has_table(table)]
    per_run = [m for m in per_run if m]
    if not per_run:
        return None
    common = set.intersection(*per_run) or per_run[0]
    index = load.read_runs(runs, "deltas", ["module", "layer", "role"]).drop_duplicates("module")
    index = index[index["module"].isin(common) & index["layer"].notna()]
    if index.empty:
        return sorted(common)[0]
    for role in ROLE_PREFERENCE + tuple(sorted(index["role"].dropna().unique())):
        picks = index[index["role"] == role].sort_values("layer")
        if not picks.empty:
            return str(picks.iloc[len(picks) // 2]["module"])
    return sorted(common)[0]


def checkpoints(run: Run) -> pd.DataFrame:
    """The run's checkpoints in training order (by step, then name), from the deltas index; controls excluded."""
    d = load.read(run, "deltas", ["checkpoint", "step"]).drop_duplicates()
    d = d[d["checkpoint"] != "controls"]
    return d.sort_values(["step", "checkpoint"], na_position="first").reset_index(drop=True)


def latest_checkpoint(run: Run) -> str | None:
    """The last checkpoint of a run in training order (None when the run read nothing)."""
    order = checkpoints(run)
    return None if order.empty else str(order["checkpoint"].iloc[-1])


def representative_modules(run: Run, checkpoint: str) -> pd.DataFrame:
    """Per role, the module at the middle layer of one checkpoint (module, layer, role, rank_bound)."""
    d = load.read(run, "deltas", ["checkpoint", "module", "layer", "role", "rank_bound"],
                  [("checkpoint", "==", checkpoint)])
    d = d[d["layer"].notna()]
    picks = []
    for _, g in d.groupby("role", sort=True):
        layers = sorted(g["layer"].unique())
        middle = layers[len(layers) // 2]
        picks.append(g[g["layer"] == middle].iloc[0])
    return pd.DataFrame(picks[:MAX_ROLES])
