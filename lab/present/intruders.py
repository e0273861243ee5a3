"""The ``intruders`` table shaped for reading: which (ε, k) a summary shows by default, and the counts there.

The default is the spectra probe's own setting, ε = 0.5 and k = 10 (the top ten singular vectors,
as in Shuttleworth et al. 2024), on the left (output) side; when a run swept other values, the
nearest ε and the smallest k at least 10 (else the largest k) that the table holds.

Example::

    >>> import pandas as pd
    >>> rows = pd.DataFrame({"threshold": [0.3, 0.6, 0.3, 0.6], "top_k": [8, 8, 16, 16]})
    >>> setting(rows)
    (0.6, 16)
"""

from __future__ import annotations

import pandas as pd

from lab.kernels.subspaces import INTRUDER_THRESHOLD as DEFAULT_THRESHOLD  # ε = 0.5, the spectra probe's default
from lab.kernels.subspaces import INTRUDER_TOP as DEFAULT_TOP_K  # k = 10, the spectra probe's default

DEFAULT_SIDE = "left"


def setting(rows: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD, top_k: int = DEFAULT_TOP_K) -> tuple[float, int]:
    """(ε, k) held by ``rows`` nearest the wanted ones: the closest ε (the larger on a tie), the smallest k ≥ top_k
    (the largest k when none is that deep)."""
    thresholds = sorted(float(t) for t in rows["threshold"].dropna().unique())
    ks = sorted(int(k) for k in rows["top_k"].dropna().unique())
    eps = min(thresholds, key=lambda t: (abs(t - threshold), -t))
    deep = [k for k in ks if k >= top_k]
    return eps, (deep[0] if deep else ks[-1])


def at(rows: pd.DataFrame, threshold: float, top_k: int, side: str | None = DEFAULT_SIDE) -> pd.DataFrame:
    """The rows of one (ε, k) (and one side, unless ``side`` is None), controls' checkpoint left out."""
    keep = (rows["threshold"].astype(float).sub(threshold).abs() < 1e-9) & (rows["top_k"].astype(int) == int(top_k))
    if side is not None:
        keep &= rows["side"] == side
    if "checkpoint" in rows.columns:
        keep &= rows["checkpoint"].astype(str) != "controls"
    return rows[keep]


def digest(rows: pd.DataFrame, side: str | None = None) -> pd.DataFrame:
    """Per run, checkpoint, side and k: the modules and the total intruder count at each ε (one column ``ε = …``
    each), controls' checkpoint left out; ``side`` keeps one side only."""
    keys = [k for k in ("run", "checkpoint", "side", "top_k") if k in rows.columns]
    if rows.empty:
        return pd.DataFrame(columns=keys)
    rows = rows[rows["checkpoint"].astype(str) != "controls"] if "checkpoint" in rows.columns else rows
    if side is not None:
        rows = rows[rows["side"] == side]
    counts = rows.pivot_table(index=keys, columns="threshold", values="intruder_count", aggfunc="sum")
    counts.columns = [f"ε = {float(t):g}" for t in counts.columns]
    modules = rows.groupby(keys)["module"].nunique().rename("modules")
    examined = rows.groupby(keys + ["module"])["examined"].first().groupby(level=keys).sum().rename("examined")
    return pd.concat([modules, examined, counts], axis=1).reset_index()
