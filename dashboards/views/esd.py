"""Heavy-tailed spectra (WeightWatcher's metrics): the power-law α of the base W beside W + ΔW by layer and
role, how fine-tuning moved it module by module, and WeightWatcher's summary columns."""

import streamlit as st

from dashboards import data, filters, ui
from lab.present import esd
from lab.present.figures import esd as fig

sel = filters.current()
ui.header("esd")
if not ui.has_table(sel, "esd", "esd", detail="Run `lab analyze ... --base BASE --probes esd` to add it."):
    st.stop()

rows = esd.matrices(data.read(sel.runs, "esd", None, sel.filters()))
if rows.empty:
    st.info("No esd rows of W, W + ΔW or ΔW in this selection: widen the filters in the sidebar.")
    st.stop()

st.subheader("α by layer and role")
ui.show(fig.alpha_chart(rows))
st.subheader("How fine-tuning moved α")
ui.show(fig.shift_chart(rows))
pairs = esd.alpha_pairs(rows)
with st.expander("per module: α of W, W + ΔW and ΔW, and the shift α(W + ΔW) − α(W)"):
    st.dataframe(pairs, hide_index=True, width="stretch")

st.subheader("WeightWatcher's metrics per matrix and role (medians over layers)")
st.dataframe(esd.digest(rows), hide_index=True, width="stretch")
with st.expander("esd rows (WeightWatcher's details column names)"):
    st.dataframe(rows, hide_index=True, width="stretch")
ui.column_help("esd")
