"""The ``esd`` table shaped for reading: per module, the power-law α of the base W beside that of the
fine-tuned W + ΔW (and of ΔW itself), and how far fine-tuning moved it.

α is WeightWatcher's exponent of the eigenvalues λ = σ² (Clauset, Shalizi & Newman's fit, see
:mod:`lab.probes.esd`): a smaller α is a heavier tail. Only matrices with a fit (α not NaN) are
paired; the run's random controls (checkpoint ``controls``) are left out.

Example::

    >>> import pandas as pd
    >>> rows = pd.DataFrame({"run": "r", "checkpoint": "c", "module": ["m", "m", "m"], "layer": 0, "role": "q",
    ...                      "source": ["weight", "tuned", "delta"], "alpha": [4.0, 3.0, 2.0], "D": 0.1})
    >>> alpha_pairs(rows)[["module", "alpha_weight", "alpha_tuned", "alpha_delta", "alpha_shift"]].to_dict("records")
    [{'module': 'm', 'alpha_weight': 4.0, 'alpha_tuned': 3.0, 'alpha_delta': 2.0, 'alpha_shift': -1.0}]
"""

from __future__ import annotations

import pandas as pd

SOURCES = ("weight", "tuned", "delta")  # the base W, W + ΔW, ΔW
LABELS = {"weight": "base W", "tuned": "W + ΔW", "delta": "ΔW"}
KEYS = ["run", "checkpoint", "step", "module", "layer", "role"]


def matrices(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows about real checkpoints' matrices (source weight, tuned or delta): controls left out."""
    if rows.empty or "source" not in rows.columns:
        return rows.iloc[0:0]
    keep = rows["source"].isin(SOURCES)
    if "checkpoint" in rows.columns:
        keep &= rows["checkpoint"].astype(str) != "controls"
    return rows[keep]


def alpha_pairs(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, checkpoint, module): ``alpha_weight``, ``alpha_tuned``, ``alpha_delta`` (NaN where that
    matrix was not analysed or has no fit), ``D_tuned`` (the KS distance of W + ΔW's fit) and
    ``alpha_shift`` = alpha_tuned − alpha_weight (negative: fine-tuning made the tail heavier)."""
    rows = matrices(rows)
    keys = [k for k in KEYS if k in rows.columns]
    columns = keys + ["alpha_weight", "alpha_tuned", "alpha_delta", "D_tuned", "alpha_shift"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    values = ["alpha"] + (["D"] if "D" in rows.columns else [])
    index = [k for k in keys if k not in ("step", "layer", "role")]
    wide = rows.groupby(index + ["source"], sort=True)[values].first().unstack("source")  # only pairs that exist
    out = pd.DataFrame(index=wide.index)
    for source in SOURCES:
        out[f"alpha_{source}"] = wide["alpha"][source] if source in wide["alpha"].columns else float("nan")
    has_d = "D" in values and "tuned" in wide["D"].columns
    out["D_tuned"] = wide["D"]["tuned"] if has_d else float("nan")
    out["alpha_shift"] = out["alpha_tuned"] - out["alpha_weight"]
    out = out.reset_index()
    extra = [k for k in ("step", "layer", "role") if k in keys]
    if extra:
        out = out.merge(rows[index + extra].drop_duplicates(index), on=index, how="left")
    return out[[c for c in columns if c in out.columns]].astype({c: float for c in columns[len(keys):]})


def long_alpha(rows: pd.DataFrame) -> pd.DataFrame:
    """The measured rows with a fit, with a readable ``matrix`` column (base W, W + ΔW, ΔW) for legends."""
    rows = matrices(rows)
    if rows.empty or "alpha" not in rows.columns:
        return rows.iloc[0:0]
    rows = rows[rows["alpha"].notna()]
    return rows.assign(matrix=rows["source"].map(LABELS))


def digest(rows: pd.DataFrame) -> pd.DataFrame:
    """Per run, checkpoint, matrix (base W, W + ΔW, ΔW) and role: modules fitted and the medians of alpha, D,
    alpha_weighted, stable_rank and mp_softrank, and the mean num_rand_spikes (what a WeightWatcher summary shows)."""
    rows = long_alpha(rows)
    keys = [k for k in ("run", "checkpoint", "matrix", "role") if k in rows.columns]
    if rows.empty:
        return pd.DataFrame(columns=keys + ["modules", "alpha", "D"])
    agg = {"modules": ("alpha", "size"), "alpha": ("alpha", "median")}
    for column, how in (("D", "median"), ("alpha_weighted", "median"), ("stable_rank", "median"),
                        ("mp_softrank", "median"), ("num_rand_spikes", "mean")):
        if column in rows.columns:
            agg[column] = (column, how)
    return rows.groupby(keys, sort=True, dropna=False).agg(**agg).reset_index()
