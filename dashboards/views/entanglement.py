"""Internal entanglement: profiles per module with Page's curve and the maximum, the layer × cut
heatmap, the valley by layer and over steps; runs, checkpoints and steps compared side by side."""

import streamlit as st

from dashboards import data, filters, ui
from lab.present.figures import entanglement as fig
from lab.present.frames import CONTROL_SOURCES, ID, distinct, matching_controls, measured

COLUMNS = ID + ["source", "cut", "row_sites", "n_sites", "d_left", "d_right", "entropy", "renyi2",
                "max_entropy", "page_entropy"]


sel = filters.current()
ui.header("entanglement")
if not ui.has_table(sel, "entanglement", "entanglement", "entanglement", "entanglement_summary",
                    detail="Run `lab analyze ... --probes entanglement` to add it."):
    st.stop()

controls = data.read(sel.runs, "entanglement", COLUMNS, [("source", "in", list(CONTROL_SOURCES))])
modules = distinct(sel.index, "module")
if not modules:
    st.info("No modules in this selection: widen the filters in the sidebar.")
    st.stop()

# -- profile of one module ----------------------------------------------------------------
st.subheader("Profile across cuts")
module = st.selectbox("Module", modules, index=len(modules) // 2, help="Filter by role and layer in the sidebar to shorten this list.")
rows = measured(data.read(sel.runs, "entanglement", COLUMNS, [("module", "==", module)] + sel.filters(role=False)))
bounds = sel.index.loc[sel.index["module"] == module, "rank_bound"].dropna().unique().tolist()
layout = st.radio("Compare runs / checkpoints / steps", ["overlay", "side by side"], horizontal=True)
ctrl = matching_controls(rows, controls, bounds)
if rows.empty:
    st.info("This module has no entanglement rows in the selection.")
elif layout == "overlay":
    ui.show(fig.profile_chart(rows, ctrl, rank_bound=bounds))
else:
    groups = list(rows.groupby(["run", "checkpoint"], sort=False))
    for start in range(0, len(groups), 3):
        for column, ((run, ckpt), g) in zip(st.columns(3), groups[start:start + 3]):
            with column:
                r = sel.index.loc[(sel.index["module"] == module) & (sel.index["run"] == run)
                                  & (sel.index["checkpoint"] == ckpt), "rank_bound"].dropna().unique().tolist()
                ui.show(fig.profile_chart(g, matching_controls(g, controls, r), rank_bound=r, title=f"{run} · {ckpt}"))

# -- heatmap ------------------------------------------------------------------------------
st.subheader("Layer × cut")
pairs = sel.index[["run", "checkpoint"]].drop_duplicates()
pair_labels = [f"{r} · {c}" for r, c in pairs.itertuples(index=False)]
left, right = st.columns(2)
pair = left.selectbox("Run · checkpoint", pair_labels, index=len(pair_labels) - 1)
run_name, ckpt = pairs.iloc[pair_labels.index(pair)]
roles = distinct(sel.index, "role")
role = right.selectbox("Role", roles)
heat = data.read([r for r in sel.runs if r.name == run_name], "entanglement",
                 ["layer", "role", "source", "cut", "row_sites", "entropy", "page_entropy"],
                 [("checkpoint", "==", ckpt), ("role", "==", role)] + sel.filters(checkpoint=False, role=False))
ui.show(fig.heatmap_chart(heat, title=f"Layer × cut, S/S_Page: role {role} ({run_name}, {ckpt})"))

# -- valley by layer and over steps -------------------------------------------------------
st.subheader("Valley at the row|column cut")
v = data.valleys(sel.runs)
v = measured(v.merge(sel.index[["run", "checkpoint", "module"]], on=["run", "checkpoint", "module"]))
ui.show(fig.valley_chart(v))
if v["step"].nunique() > 1:
    ui.show(fig.steps_chart(v))
with st.expander("Valley rows"):
    st.dataframe(v, hide_index=True, width="stretch")
if data.computed(sel.runs, "entanglement_summary"):
    with st.expander("entanglement_summary table"):
        st.dataframe(data.read(sel.runs, "entanglement_summary", None, sel.filters()), hide_index=True, width="stretch")
ui.column_help("entanglement", "entanglement_summary")
