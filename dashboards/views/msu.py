"""Minimal semantic units: how each adapter's update is shared among its ranks, the effective number
of units by layer, one module's unit contributions, a module × measure map of how alike the units
are and one module's unit × unit similarity heatmap, the permutation checks, and the numbers."""

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

st.subheader("One module's units")
modules = sorted(msu["module"].dropna().unique())
module = st.selectbox("Module", modules, index=len(modules) // 2)
ui.show(fig.contributions_chart(units[units["module"] == module]))

st.subheader("How alike the units are")
pairs = msu[["run", "checkpoint"]].drop_duplicates()
labels = [f"{r} · {c}" for r, c in pairs.itertuples(index=False)]
chosen = st.selectbox("Run · checkpoint", labels, index=len(labels) - 1)
run_name, checkpoint = pairs.iloc[labels.index(chosen)]
ui.show(fig.similarity_chart(msu[(msu["run"] == run_name) & (msu["checkpoint"] == checkpoint)],
                             title=f"How alike the units are, per module ({run_name}, {checkpoint})"))
similar = data.read([r for r in sel.runs if r.name == run_name], "msu_similarity", None, sel.filters())
if not similar.empty:
    similar = similar[(similar["checkpoint"] == checkpoint) & (similar["module"] == module)]
ui.show(fig.unit_similarity_heatmap(similar, title=f"Unit × unit similarity: {module} ({run_name}, {checkpoint})"))

st.subheader("Per run, checkpoint and role (means over layers)")
st.dataframe(digests.msu(msu), hide_index=True, width="stretch")
with st.expander("msu rows (similarity: cos_a_*, cos_b_*; permutation errors)"):
    st.dataframe(msu, hide_index=True, width="stretch")
ui.column_help("msu", "msu_units")
