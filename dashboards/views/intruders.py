"""Intruder dimensions (Shuttleworth et al. 2024) over the ε × k sweep: a layer × role map of the count at a
chosen (ε, k) and side, the count against ε per run, and the sweep's totals."""

import pandas as pd
import streamlit as st

from dashboards import data, filters, ui
from lab.present import intruders as intr
from lab.present.figures import intruders as fig
from lab.present.findings import last_checkpoint

sel = filters.current()
ui.header("intruders")
if not ui.has_table(sel, "intruders", "intruders", "intruders", "intruder_vectors",
                    detail="Run `lab analyze ... --base BASE --probes intruders` to add it."):
    st.stop()

rows = data.read(sel.runs, "intruders", None, sel.filters())
rows = rows[rows["checkpoint"].astype(str) != "controls"] if not rows.empty else rows
if rows.empty:
    st.info("No intruder counts in this selection: widen the filters in the sidebar.")
    st.stop()

eps, k = intr.setting(rows)
thresholds = sorted(float(t) for t in rows["threshold"].unique())
ks = sorted(int(x) for x in rows["top_k"].unique())
left, middle, right = st.columns(3)
eps = left.selectbox("ε (threshold)", thresholds, index=thresholds.index(eps))
k = middle.selectbox("k (top singular vectors)", ks, index=ks.index(k))
side = right.radio("Side", ["left", "right"], horizontal=True,
                   help="left: output (column-space) singular vectors; right: input (row-space) ones")

st.subheader("Where the intruders are")
last = pd.concat([g[g["checkpoint"].astype(str) == last_checkpoint(g)] for _, g in rows.groupby("run", sort=True)],
                 ignore_index=True)
ui.show(fig.heatmap_chart(last, eps, k, side, title=f"Intruders at ε = {eps:g}, k = {k} ({side} vectors), layer × role "
                                                    "(last checkpoint of each run)"))
st.subheader("How the count depends on ε")
ui.show(fig.sweep_chart(rows, k))

st.subheader("The sweep's totals per run, checkpoint, side and k")
st.dataframe(intr.digest(rows), hide_index=True, width="stretch")
with st.expander("intruders rows"):
    st.dataframe(rows, hide_index=True, width="stretch")
if data.computed(sel.runs, "intruder_vectors"):
    with st.expander("intruder_vectors: each examined vector's σ and largest |cos| with W's (apply any threshold)"):
        st.dataframe(data.read(sel.runs, "intruder_vectors", None, sel.filters()), hide_index=True, width="stretch")
ui.column_help("intruders", "intruder_vectors")
