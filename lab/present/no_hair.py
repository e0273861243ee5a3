"""The no_hair table read as verdicts: which pairs are matched, and where the intervals separate.

Shared by the findings, the dashboard page, the report section and ``analyses/no_hair.py``, so the
rule is written once:

* a pair (a, b) is **matched** on update size when the larger of its mean update sizes
  (``update_first``, ``update_second``: √(‖ΔW_q‖² + ‖ΔW_v‖²)/√(‖W_q‖² + ‖W_v‖²), mean over layers) is
  at most :data:`MATCH` times the smaller;
* per (pair, measure, layer, L) row the verdict is **closer** when the a–b interval lies below
  both a's and b's interval from the base (the attention tells a from b less than either from the
  base), **farther** when it lies above both, and **not separated** otherwise. Nothing else is a
  verdict: means without separated intervals are reported as measured.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MATCH = 1.5
MEASURES = ("token_cuts", "digit_chain", "rows", "head_outputs", "layer_output")
VERDICTS = ("closer", "farther", "not separated")


def kind(checkpoint: str, methods: dict[str, str] | None = None) -> str:
    """A checkpoint's method for pairing (from ``methods`` when given, else 'full' for a name starting
    with 'full' and 'lora' otherwise)."""
    if methods and checkpoint in methods:
        return methods[checkpoint]
    return "full" if str(checkpoint).split("/")[0].startswith("full") else "lora"


def with_verdicts(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with ``pair`` ('a : b') and ``verdict`` (closer / farther / not separated) columns."""
    t = rows.copy()
    closer = t["distance_hi"] < np.minimum(t["first_base_lo"], t["second_base_lo"])
    farther = t["distance_lo"] > np.maximum(t["first_base_hi"], t["second_base_hi"])
    t["verdict"] = np.where(closer, "closer", np.where(farther, "farther", "not separated"))
    t["pair"] = t["first"].astype(str) + " : " + t["second"].astype(str)
    return t


def pairs(rows: pd.DataFrame, match: float = MATCH, methods: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per (run, pair): mean update sizes and inside distances over layers, their size ratio,
    matched or not, and the methods of the two ('lora–full', …)."""
    t = rows if "pair" in rows.columns else with_verdicts(rows)
    one = t.drop_duplicates(["run", "pair", "layer"])
    p = (one.groupby(["run", "pair", "first", "second"], sort=False)
            [["update_first", "update_second", "inside_q", "inside_v", "inside"]].mean().reset_index())
    small = np.minimum(p["update_first"], p["update_second"])
    p["size_ratio"] = np.maximum(p["update_first"], p["update_second"]) / small.where(small > 0)
    p["matched"] = p["size_ratio"] <= match
    p["kinds"] = [f"{kind(a, methods)}–{kind(b, methods)}" for a, b in zip(p["first"], p["second"])]
    return p


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (run, pair, measure): means over layers and lengths of the distances and the ratio, and how
    many (layer, L) rows have each verdict."""
    t = rows if "verdict" in rows.columns else with_verdicts(rows)
    keys = ["run", "pair", "measure"]
    s = t.groupby(keys, sort=False)[["distance", "first_base", "second_base", "inside", "ratio"]].mean()
    counts = t.groupby(keys + ["verdict"]).size().unstack(fill_value=0)
    for v in VERDICTS:
        s[v] = counts[v].reindex(s.index, fill_value=0) if v in counts.columns else 0
    return s.reset_index()


def pair_verdict(rows: pd.DataFrame) -> str:
    """One pair's verdict on one measure over its (layer, L) rows, in words."""
    t = rows if "verdict" in rows.columns else with_verdicts(rows)
    n = len(t)
    c, f = int((t["verdict"] == "closer").sum()), int((t["verdict"] == "farther").sum())
    if n and c == n:
        return f"closer to each other than to the base in all {n} (layer, L) rows"
    if n and f == n:
        return f"farther apart than from the base in all {n} (layer, L) rows"
    return f"not separable: closer in {c}, farther in {f}, not separated in {n - c - f} of {n} (layer, L) rows"
