"""Runs: what each run read and how (inputs with hashes, options, versions, status), and its tables."""

import json

import pandas as pd
import streamlit as st

from dashboards import data, filters, ui
from lab.present.figures.updates import norms_chart
from lab.present.provenance import run_info

sel = filters.current()
st.title("Runs")
if not sel.runs:
    ui.no_runs(sel.results)
    st.stop()

rows = []
for run in sel.runs:
    m = run.manifest
    rows.append({"run": run.name, "status": m.get("status"), "started": m.get("started"), "seconds": m.get("seconds"),
                 "checkpoints": len((m.get("inputs") or {}).get("checkpoints", [])),
                 "tables": ", ".join(run.tables()), "error": m.get("error", "")})
st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
st.caption("A run whose status is not *complete* stopped early; its tables may be missing.")

name = st.selectbox("Run details", sel.run_names)
run = next(r for r in sel.runs if r.name == name)
info = run_info(run)
left, right = st.columns(2)
with left:
    st.subheader("Inputs")
    st.dataframe(info.inputs.frame(), hide_index=True, width="stretch")
    st.subheader("Tables")
    st.dataframe(pd.DataFrame([(t, data.row_count(str(run.path), t, data.stamp(str(run.path), t))) for t in run.tables()],
                              columns=["table", "rows"]), hide_index=True, width="stretch")
with right:
    st.subheader("Options")
    st.dataframe(info.options.frame(), hide_index=True, width="stretch")
    st.subheader("Versions")
    st.dataframe(info.versions.frame(), hide_index=True, width="stretch")
with st.expander("manifest.json"):
    st.code(json.dumps(run.manifest, indent=2, default=str), language="json")

st.subheader("Updates read")
deltas = data.read(sel.runs, "deltas", None, sel.filters())
if deltas.empty:
    st.info("No module updates in this selection.")
else:
    ui.show(norms_chart(deltas))
    st.dataframe(deltas, hide_index=True, width="stretch")
ui.column_help("deltas")
