"""Merges written by ``lab merge``: each method's error against the exact weighted sum at its rank k,
beside the best rank-k error, the numbers per merged adapter, and (``--eval-texts``) the held-out
loss of each merge beside its inputs' and the base's on each text set."""

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

st.subheader("Held-out loss per text set (merge_eval)")
evals = data.read(sel.runs, "merge_eval")  # whole models: the module, layer and role filters do not apply
if evals.empty:
    st.info("No merge evaluations in this selection: run `lab merge ... --base BASE --eval-texts a.txt,b.txt`.")
else:
    ui.show(fig.merge_eval_chart(evals))
    st.dataframe(digests.merge_eval(evals), hide_index=True, width="stretch")
    with st.expander("merge_eval rows"):
        st.dataframe(evals, hide_index=True, width="stretch")
    ui.column_help("merge_eval")
