"""Figures for tables no probe writes yet (thresholds, attention): drawn from the columns the design
names when a run has them, and absent (None) otherwise, so the pages fall back to the rows."""

import math

import numpy as np
import pandas as pd

from lab.report.figures import attention, thresholds


def test_threshold_ratio_is_the_larger_norm_over_sqrt_ln_L():
    rng = np.random.default_rng(0)
    rows = pd.DataFrame([{"layer": layer, "head": head, "seq_len": length,
                          "norm_q": rng.uniform(0.5, 3), "norm_k": rng.uniform(0.5, 3)}
                         for layer in range(3) for head in range(2) for length in (64, 512)])
    chart = thresholds.ratio_chart(rows)
    drawn = {l.get_label(): l for l in chart.figure.axes[0].get_lines()}
    for length in (64, 512):
        expected = [max(max(r.norm_q, r.norm_k) for r in rows.itertuples() if r.layer == layer and r.seq_len == length)
                    / math.sqrt(math.log(length)) for layer in range(3)]
        assert np.allclose(drawn[f"L = {length} (max over heads)"].get_ydata(), expected)
    assert np.allclose(drawn["Γ = √ln L (Θ-threshold, asymptotic)"].get_ydata(), 1.0)
    assert any("asymptotic" in t.get_text() for t in chart.figure.axes[0].texts)


def test_pending_figures_need_their_columns():
    assert thresholds.ratio_chart(pd.DataFrame({"layer": [0], "value": [1.0]})) is None
    assert attention.profile_chart(pd.DataFrame({"layer": [0], "cut": [1]})) is None
    rows = pd.DataFrame({"cut": [1, 2, 1, 2], "entropy": [0.5, 0.7, 0.6, 0.8], "model": ["base", "base", "tuned", "tuned"]})
    drawn = {l.get_label(): l for l in attention.profile_chart(rows).figure.axes[0].get_lines()}
    assert np.allclose(drawn["tuned (mean over layers and heads)"].get_ydata(), [0.6, 0.8])
