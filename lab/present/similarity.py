"""The adapter_similarity tables shaped for reading: the pairs that were compared, the members in training order,
member × member matrices of a pair measure, and one summary row per pair.

Example::

    >>> import pandas as pd
    >>> pairs = pd.DataFrame({"first": ["a", "a"], "second": ["b", "b"], "module": ["q", "v"], "cosine": [0.2, 0.4]})
    >>> round(float(matrix(pairs).loc["a", "b"]), 12)
    0.3
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SAME = {"cosine": 1.0, "grassmann_left": 0.0, "grassmann_right": 0.0, "sign_conflict": 0.0}  # an update with itself


def compared(pairs: pd.DataFrame) -> pd.DataFrame:
    """The pairs that were compared (a pair with a note, a streamed update or shapes that differ, was not)."""
    if pairs.empty or "note" not in pairs.columns:
        return pairs
    return pairs[pairs["note"].fillna("") == ""]


def member_steps(deltas: pd.DataFrame) -> dict[str, float]:
    """{checkpoint name: step} from deltas rows (run, checkpoint, step); NaN for a checkpoint without a step."""
    if deltas.empty or "step" not in deltas.columns:
        return {}
    d = deltas.drop_duplicates("checkpoint")
    return {str(c): float(s) if pd.notna(s) else float("nan") for c, s in zip(d["checkpoint"], d["step"])}


def members(pairs: pd.DataFrame, steps: dict[str, float] | None = None) -> list[str]:
    """The members of the pairs in training order (step, none first, then name)."""
    names = set(pairs["first"].astype(str)) | set(pairs["second"].astype(str)) if not pairs.empty else set()
    steps = steps or {}

    def key(name: str) -> tuple:
        s = steps.get(name, float("nan"))
        return (-1.0 if math.isnan(s) else s, name)

    return sorted(names, key=key)


def matrix(pairs: pd.DataFrame, measure: str = "cosine", order: list[str] | None = None) -> pd.DataFrame:
    """A symmetric member × member frame of ``measure``, the mean over the rows (modules) of each pair; the
    diagonal is the measure of an update with itself (cosine 1, distance 0; sign conflict 0)."""
    order = order or members(pairs)
    m = pd.DataFrame(np.nan, index=order, columns=order)
    means = pairs.groupby(["first", "second"])[measure].mean()
    for (a, b), v in means.items():
        if a in m.index and b in m.index:
            m.loc[a, b] = m.loc[b, a] = v
    for a in order:
        m.loc[a, a] = SAME.get(measure, float("nan"))
    return m


def digest(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per run and compared pair: modules, and the means over them of the cosine, the Grassmann distances,
    the smallest principal angles and the sign-conflict rate."""
    pairs = compared(pairs)
    keys = [k for k in ("run", "first", "second") if k in pairs.columns]
    if pairs.empty:
        return pd.DataFrame(columns=keys)
    cols = [c for c in ("cosine", "grassmann_left", "grassmann_right", "min_angle_left", "min_angle_right",
                        "sign_conflict") if c in pairs.columns]
    out = pairs.groupby(keys, sort=True)[cols].mean()
    out.insert(0, "modules", pairs.groupby(keys, sort=True)["module"].nunique())
    return out.reset_index()
