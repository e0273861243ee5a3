"""The no-hair reading rules (lab/present/no_hair.py) against a plain loop over seeded rows: a verdict
only where the a–b interval clears both members' intervals from the base, pairs matched on update
size within MATCH, and the per-pair counts adding up to the rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lab.present import no_hair


def _rows(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = []
    sizes = {"lora-r4": 0.02, "lora-r64": 0.05, "full": 0.024}
    names = list(sizes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for layer in range(3):
                for L in (16, 32):
                    for m in no_hair.MEASURES:
                        centre = rng.uniform(0.1, 1.0, 3)
                        half = rng.uniform(0.01, 0.3, 3)
                        row = {"run": "r", "first": a, "second": b, "layer": layer, "seq_len": L, "measure": m,
                               "inside_q": rng.uniform(0.1, 0.5), "inside_v": rng.uniform(0.1, 0.5),
                               "update_first": sizes[a] * (1 + 0.01 * layer), "update_second": sizes[b] * (1 + 0.01 * layer)}
                        row["inside"] = (row["inside_q"] + row["inside_v"]) / 2
                        for j, col in enumerate(("distance", "first_base", "second_base")):
                            row[col], row[f"{col}_lo"], row[f"{col}_hi"] = centre[j], centre[j] - half[j], centre[j] + half[j]
                        row["ratio"] = row["distance"] / row["inside"]
                        out.append(row)
    return pd.DataFrame(out)


def test_verdicts_follow_the_intervals_row_by_row():
    t = no_hair.with_verdicts(_rows())
    for r in t.itertuples():
        below = r.distance_hi < r.first_base_lo and r.distance_hi < r.second_base_lo
        above = r.distance_lo > r.first_base_hi and r.distance_lo > r.second_base_hi
        assert r.verdict == ("closer" if below else "farther" if above else "not separated")
    assert set(t["verdict"]) == set(no_hair.VERDICTS)  # the seeded rows hit every case


def test_pairs_are_matched_on_mean_update_size_and_counts_add_up():
    t = no_hair.with_verdicts(_rows(1))
    pairs = no_hair.pairs(t).set_index("pair")
    for pair, g in t.groupby("pair"):
        per_layer = g.drop_duplicates("layer")
        u1, u2 = per_layer["update_first"].mean(), per_layer["update_second"].mean()
        assert pairs.loc[pair, "size_ratio"] == pytest.approx(max(u1, u2) / min(u1, u2), rel=1e-12)
        assert pairs.loc[pair, "matched"] == (max(u1, u2) / min(u1, u2) <= no_hair.MATCH)
        assert pairs.loc[pair, "inside"] == pytest.approx(per_layer["inside"].mean(), rel=1e-12)
    assert pairs.loc["lora-r4 : full", "matched"] and not pairs.loc["lora-r4 : lora-r64", "matched"]
    assert pairs.loc["lora-r4 : full", "kinds"] == "lora–full"
    s = no_hair.summary(t)
    assert s[list(no_hair.VERDICTS)].to_numpy().sum() == len(t)
    one = t[(t["pair"] == "lora-r4 : full") & (t["measure"] == "rows")]
    words = no_hair.pair_verdict(one)
    n_closer = int((one["verdict"] == "closer").sum())
    assert f"of {len(one)}" in words or f"all {len(one)}" in words
    assert (f"closer in {n_closer}," in words) or n_closer in (0, len(one))
