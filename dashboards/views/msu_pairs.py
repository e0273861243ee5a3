"""Several adapters of one base: concatenation equals summation, and the cross terms of index-wise
averaging with their spread over rank permutations."""

import streamlit as st

from dashboards import data, filters, ui
from lab.present import digests
from lab.present.figures import msu as fig

sel = filters.current()
ui.header("msu_pairs")
if not ui.has_table(sel, "msu_pairs", "msu_pairs",
                    detail="Run `lab analyze ADAPTER_1 ADAPTER_2 ... --probes msu_pairs` to add it."):
    st.stop()

# a row joins several checkpoints ('a+b'): the checkpoint and step filters do not apply to it
pairs = data.read(sel.runs, "msu_pairs", None, [f for f in sel.filters(checkpoint=False) if f[0] != "step"])
if pairs.empty:
    st.info("No modules in this selection: widen the filters in the sidebar.")
    st.stop()
ui.show(fig.pairs_chart(pairs))
st.dataframe(digests.pairs(pairs), hide_index=True, width="stretch")
ui.column_help("msu_pairs")
