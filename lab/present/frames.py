"""Derived frames that both the dashboard and the report draw from: the random controls that
match a module's shape, the measured rows apart from them, S/S_Page, and distinct-value helpers.

Everything here is plain pandas over rows shaped like ``lab.store.schema`` tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lab.store.schema import ID_COLUMNS

ID = [c.name for c in ID_COLUMNS]  # the identifying columns every table starts with


def present(df: pd.DataFrame, columns) -> list[str]:
    """The columns of ``columns`` that ``df`` has, in that order."""
    return [c for c in columns if c in df.columns]


def with_layer(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that belong to a transformer block (a layer index); none when the column is absent."""
    return df[df["layer"].notna()] if "layer" in df.columns else df.iloc[0:0]


def distinct(df: pd.DataFrame, column: str) -> list:
    """Sorted distinct non-null values of a column (empty when the column is absent)."""
    if column not in df.columns:
        return []
    values = df[column].dropna().unique().tolist()
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def shape_signature(rows: pd.DataFrame) -> tuple:
    """What fixes a profile's theory curves: the site count, the row sites and D_left at every cut.

    Two matrices with the same signature have the same Page curve and maximum at every cut, so a
    random control of that shape is the right baseline for them.
    """
    rows = rows.drop_duplicates("cut").sort_values("cut")  # several checkpoints share one shape
    return (int(rows["n_sites"].iloc[0]), int(rows["row_sites"].iloc[0]), tuple(int(d) for d in rows["d_left"]))


CONTROL_SOURCES = ("random", "random_lora")


def is_control(df: pd.DataFrame) -> pd.Series:
    """Which rows are random controls (source random or random_lora) rather than measured matrices."""
    if "source" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["source"].isin(CONTROL_SOURCES)


def measured(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that describe real checkpoints (controls left out)."""
    return df[~is_control(df)]


def matching_controls(module_rows: pd.DataFrame, controls: pd.DataFrame, rank_bound=None) -> pd.DataFrame:
    """The control profiles for ``module_rows``' shape: the Gaussian matrix of that shape and, given the
    module's rank bound r (or several), the product of Gaussian factors of rank r (an untrained LoRA).

    Controls are found by the module name the probes give them (``lab.kernels.controls.control_module``)
    and kept only when their site chain matches, so a control is never drawn against the wrong shape.
    """
    if controls is None or controls.empty or module_rows.empty:
        return module_rows.iloc[0:0]
    from lab.kernels.controls import RANDOM, RANDOM_LORA, control_module

    want = shape_signature(module_rows)
    at_cut = module_rows[module_rows["cut"] == module_rows["row_sites"]]
    if at_cut.empty:
        return controls.iloc[0:0]
    rows, cols = int(at_cut["d_left"].iloc[0]), int(at_cut["d_right"].iloc[0])
    names = {control_module(RANDOM, rows, cols)}
    bounds = [rank_bound] if rank_bound is None or np.isscalar(rank_bound) else list(rank_bound)
    for r in bounds:
        if r is not None and not pd.isna(r):
            names.add(control_module(RANDOM_LORA, rows, cols, int(r)))
    candidates = controls[controls["module"].isin(names)]
    keep = [g for _, g in candidates.groupby(present(candidates, ["run", "module"]), dropna=False)
            if shape_signature(g) == want]
    return pd.concat(keep) if keep else controls.iloc[0:0]


def relative_to_page(entanglement: pd.DataFrame) -> pd.Series:
    """S / S_Page per row (1 = as entangled as a random state; undefined where Page's value is 0)."""
    page = entanglement["page_entropy"].where(entanglement["page_entropy"] > 0)
    return entanglement["entropy"] / page
