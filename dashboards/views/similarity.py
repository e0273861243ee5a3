"""Geometry between updates: how alike the same module's updates are across a run's adapters or checkpoints
(cosine between the updates, Grassmann distance, sign conflicts), member × member over modules or per layer,
and LoRA's φ(i, j) of a chosen pair."""

import streamlit as st

from dashboards import data, filters, ui
from lab.present import similarity
from lab.present.figures import similarity as fig

sel = filters.current()
ui.header("similarity")
if not ui.has_table(sel, "similarity", "adapter_similarity", "adapter_similarity", "subspace_similarity",
                    detail="Run `lab analyze A B ... --probes adapter_similarity` on two or more adapters or a training "
                           "output with checkpoint-N/ folders to add it."):
    st.stop()

# a row joins two members ('a+b' in the checkpoint column): the checkpoint and step filters apply to its members
where = [f for f in sel.filters(checkpoint=False) if f[0] != "step"]
pairs = similarity.compared(data.read(sel.runs, "adapter_similarity", None, where))
chosen = set(sel.index["checkpoint"].astype(str))
if sel.checkpoints is not None or sel.steps is not None:
    pairs = pairs[pairs["first"].astype(str).isin(chosen) & pairs["second"].astype(str).isin(chosen)]
if pairs.empty:
    st.info("No compared pairs in this selection: widen the filters in the sidebar (a pair needs both of its "
            "members chosen).")
    st.stop()
steps = similarity.member_steps(sel.index)

left, right = st.columns(2)
measure = left.selectbox("Measure", list(fig.MEASURES), format_func=lambda m: fig.MEASURES[m][0])
runs = sorted(pairs["run"].astype(str).unique())
run = right.selectbox("Run (per layer and φ)", runs)

st.subheader("Member × member, mean over modules")
ui.show(fig.pairs_chart(pairs, steps, measure=measure))
table = similarity.digest(pairs)
st.dataframe(table, hide_index=True, width="stretch")

st.subheader(f"Per layer ({run})")
mine = pairs[pairs["run"].astype(str) == run]
ui.show(fig.layers_chart(mine, steps, measure=measure))

st.subheader(f"LoRA's φ(i, j) ({run})")
options = [f"{a} – {b}" for a, b in zip(table.loc[table["run"] == run, "first"], table.loc[table["run"] == run, "second"])]
pick = st.selectbox("Pair", options)
first, second = pick.split(" – ", 1)
grid = data.read([r for r in sel.runs if r.name == run], "subspace_similarity", None,
                 where + [("first", "==", first), ("second", "==", second)])
ui.show(fig.phi_chart(grid, title=f"φ(i, j): {first} – {second} (mean over modules)"))
with st.expander("adapter_similarity rows"):
    st.dataframe(pairs, hide_index=True, width="stretch")
ui.column_help("adapter_similarity", "subspace_similarity")
