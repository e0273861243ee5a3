"""Thresholds: ‖X·W_Q^eff‖_∞ and ‖X·W_K‖_∞ against √ln L by layer and sequence length (asymptotic theory)."""

import streamlit as st

from dashboards import filters, pending, ui
from lab.report.figures import thresholds as fig

sel = filters.current()
ui.header("thresholds")
st.caption("Hu et al.'s threshold Θ(√ln L) is asymptotic in the sequence length L: read the ratio as a scale, not a verdict.")
pending.page(sel, "thresholds", "thresholds", fig.ratio_chart)
