"""External entanglement: one head's attention entropy against ℓ with the area-law/log and volume
fits the summary table holds, the no-hair comparison by layer, a layer × head map, and the numbers."""

import streamlit as st

from dashboards import data, filters, ui
from lab.present import digests
from lab.present.figures import attention as fig
from lab.present.frames import distinct

sel = filters.current()
ui.header("attention")
if not ui.has_table(sel, "attention", "attention_summary", "attention_summary", "attention_entanglement", "windows",
                    detail="Run `lab analyze ... --base BASE --probes attention` to add it (needs a tokenizer)."):
    st.stop()

# attention rows have no module role: the role filter does not apply to them
summary = data.read(sel.runs, "attention_summary", None, sel.filters(role=False))
if summary.empty:
    st.info("No attention rows in this selection: widen the filters in the sidebar.")
    st.stop()

st.subheader("Entropy of one head's attention against ℓ, with both fits")
left, middle, right = st.columns(3)
layer = left.selectbox("Layer", distinct(summary, "layer"), index=len(distinct(summary, "layer")) // 2)
head = middle.selectbox("Head", distinct(summary, "head"))
length = right.selectbox("Window length L", distinct(summary, "seq_len"), index=len(distinct(summary, "seq_len")) - 1)
where = [("layer", "==", int(layer)), ("head", "==", int(head)), ("seq_len", "==", int(length))]
profiles = data.read(sel.runs, "attention_entanglement", None, where + sel.filters(role=False))
fits = summary[(summary["layer"] == layer) & (summary["head"] == head) & (summary["seq_len"] == length)]
ui.show(fig.fit_chart(profiles, fits))

st.subheader("No-hair: the attention beside the weights")
ui.show(fig.no_hair_chart(summary))
pairs = summary[["run", "checkpoint"]].drop_duplicates()
labels = [f"{r} · {c}" for r, c in pairs.itertuples(index=False)]
chosen = st.selectbox("Run · checkpoint for the layer × head map", labels, index=len(labels) - 1)
run_name, checkpoint = pairs.iloc[labels.index(chosen)]
measure = st.radio("Measure", ["entropy_diff", "attention_tv", "area_log_r2"], horizontal=True)
ui.show(fig.head_map_chart(summary[(summary["run"] == run_name) & (summary["checkpoint"] == checkpoint)], measure,
                           title=f"Layer × head: {measure} ({run_name}, {checkpoint})"))

st.subheader("Per run, checkpoint and L")
st.dataframe(digests.attention(summary), hide_index=True, width="stretch")
with st.expander("attention_summary rows"):
    st.dataframe(summary, hide_index=True, width="stretch")
if data.computed(sel.runs, "windows"):
    with st.expander("The token windows"):
        st.dataframe(data.read(sel.runs, "windows", None, [("probe", "==", "attention")]), hide_index=True, width="stretch")
ui.column_help("attention_summary", "attention_entanglement", "windows")
