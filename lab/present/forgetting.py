"""The forgetting tables shaped for reading: one row per run, checkpoint, text set and window length with the KL
and the loss change and their intervals, and the hidden state that moved most.

Example::

    >>> import pandas as pd
    >>> layers = pd.DataFrame({"run": ["r"] * 3, "checkpoint": ["c"] * 3, "text_set": ["texts"] * 3, "seq_len": [8] * 3,
    ...                        "hidden_state": [0, 1, 2], "cosine_distance": [0.0, 0.3, 0.2]})
    >>> int(most_moved(layers)["hidden_state"].iloc[0])
    1
"""

from __future__ import annotations

import pandas as pd

KEYS = ("run", "checkpoint", "step", "text_set", "seq_len")
SHOWN = ("windows", "objective", "kl", "kl_lo", "kl_hi", "base_loss", "tuned_loss", "loss_change", "loss_change_lo",
         "loss_change_hi")


def most_moved(layers: pd.DataFrame) -> pd.DataFrame:
    """Per run, checkpoint, text set and L: the hidden state with the largest mean cosine distance, and that distance."""
    keys = [k for k in KEYS if k in layers.columns and k != "step"]
    if layers.empty:
        return pd.DataFrame(columns=keys + ["hidden_state", "cosine_distance"])
    rows = layers.dropna(subset=["cosine_distance"]).sort_values(["cosine_distance", "hidden_state"],
                                                                 ascending=[False, True])
    return rows.drop_duplicates(keys)[keys + ["hidden_state", "cosine_distance"]].reset_index(drop=True)


def digest(rows: pd.DataFrame, layers: pd.DataFrame | None = None) -> pd.DataFrame:
    """The forgetting rows' identifying columns and numbers, with (``layers`` given) the hidden state that moved most
    and its cosine distance beside each."""
    cols = [c for c in KEYS + SHOWN if c in rows.columns]
    out = rows[cols].sort_values([c for c in KEYS if c in cols]).reset_index(drop=True)
    if layers is not None and not layers.empty and not out.empty:
        top = most_moved(layers).rename(columns={"hidden_state": "most_moved_state",
                                                 "cosine_distance": "most_moved_cosine_distance"})
        out = out.merge(top, on=[k for k in KEYS if k in out.columns and k in top.columns], how="left")
    return out
