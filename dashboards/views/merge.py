"""Merges written by ``lab merge``: each method's error against the exact weighted sum at its rank k,
beside the best rank-k error, and the numbers per merged adapter."""

import streamlit as st

from dashboards import data, filters, ui
from lab.present import digests
from lab.present.figures import msu as fig

sel = filters.current()
ui.header("merge")
if not ui.has_table(sel, "merge", "merge",
                    detail="Run `lab merge ADAPTER... --method M --out DIR --results RESULTS` to add merges."):
    st.stop()

# merged adapters are not checkpoints of the analysed runs: only the run, role and layer filters apply
merge = data.read(sel.runs, "merge", None, [f for f in sel.filters(checkpoint=False) if f[0] != "step"])
if merge.empty:
    st.info("No merged modules in this selection: widen the filters in the sidebar.")
    st.stop()
ui.show(fig.merge_chart(merge))
st.subheader("Per merged adapter (means over modules)")
st.dataframe(digests.merge(merge), hide_index=True, width="stretch")
with st.expander("merge rows"):
    st.dataframe(merge, hide_index=True, width="stretch")
ui.column_help("merge")
