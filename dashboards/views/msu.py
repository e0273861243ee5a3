"""Minimal semantic units: how each adapter's update is shared among its ranks, the effective number
of units by layer, similarity and permutation checks, and the numbers."""

import streamlit as st

from dashboards import data, filters, ui
from lab.present import digests
from lab.present.figures import msu as fig

sel = filters.current()
ui.header("msu")
if not ui.has_table(sel, "msu", "msu", "msu", "msu_units", detail="Run `lab analyze ADAPTER --probes msu` to add it."):
    st.stop()

msu = data.read(sel.runs, "msu", None, sel.filters())
if msu.empty:
    st.info("No adapter modules in this selection: widen the filters in the sidebar.")
    st.stop()
units = data.read(sel.runs, "msu_units", None, sel.filters())
ui.show(fig.shares_chart(units))
ui.show(fig.effective_chart(msu))

st.subheader("Per run, checkpoint and role (means over layers)")
st.dataframe(digests.msu(msu), hide_index=True, width="stretch")
with st.expander("msu rows (similarity: cos_a_*, cos_b_*; permutation errors)"):
    st.dataframe(msu, hide_index=True, width="stretch")
ui.column_help("msu", "msu_units")
