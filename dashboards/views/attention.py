"""External entanglement: one head's token-cut profile S(ℓ) with Cardy's fit and its c, a layer × head map of
c, the digit-chain profile (no fit), the no-hair comparison by layer, a layer × head map, and the numbers."""

import streamlit as st

from dashboards import data, filters, ui
from lab.present import digests
from lab.present.figures import attention as fig
from lab.present.frames import distinct

sel = filters.current()
ui.header("attention")
if not ui.has_table(sel, "attention", "attention_summary", "attention_summary", "attention_token_fits",
                    "attention_token_cuts", "attention_entanglement", "windows",
                    detail="Run `lab analyze ... --base BASE --probes attention` to add it (needs a tokenizer)."):
    st.stop()

# attention rows have no module role: the role filter does not apply to them
summary = data.read(sel.runs, "attention_summary", None, sel.filters(role=False))
if summary.empty:
    st.info("No attention rows in this selection: widen the filters in the sidebar.")
    st.stop()

st.subheader("Token cuts: one head's S(ℓ) against ℓ with Cardy's chord fit")
left, middle, right, far = st.columns(4)
layer = left.selectbox("Layer", distinct(summary, "layer"), index=len(distinct(summary, "layer")) // 2)
head = middle.selectbox("Head", distinct(summary, "head"))
length = right.selectbox("Window length L", distinct(summary, "seq_len"), index=len(distinct(summary, "seq_len")) - 1)
has_cuts = data.computed(sel.runs, "attention_token_fits")
all_fits = data.read(sel.runs, "attention_token_fits", None, sel.filters(role=False)) if has_cuts else None
blocks = distinct(all_fits, "block") if all_fits is not None and not all_fits.empty else ["reads_past"]
block = far.selectbox("Block", blocks, help="reads_past: P[ℓ:, :ℓ]; reads_future: P[:ℓ, ℓ:] (encoders only)")
where = [("layer", "==", int(layer)), ("head", "==", int(head)), ("seq_len", "==", int(length))]
if has_cuts:
    cuts = data.read(sel.runs, "attention_token_cuts", None, where + [("block", "==", block)] + sel.filters(role=False))
    fits = all_fits[(all_fits["layer"] == layer) & (all_fits["head"] == head) & (all_fits["seq_len"] == length)
                    & (all_fits["block"] == block)]
    ui.show(fig.token_profile_chart(cuts, fits))
    pairs = all_fits[["run", "checkpoint"]].drop_duplicates()
    labels = [f"{r} · {c}" for r, c in pairs.itertuples(index=False)]
    chosen = st.selectbox("Run · checkpoint for the map of c", labels, index=len(labels) - 1)
    run_name, checkpoint = pairs.iloc[labels.index(chosen)]
    mine = all_fits[(all_fits["run"] == run_name) & (all_fits["checkpoint"] == checkpoint) & (all_fits["block"] == block)]
    ui.show(fig.cardy_map_chart(mine, title=f"Layer × head: Cardy's c, {block}, mean over L ({run_name}, {checkpoint})"))
    with st.expander("attention_token_fits rows"):
        st.dataframe(all_fits, hide_index=True, width="stretch")
else:
    st.info("These runs have no token-cut tables (measured before they existed): rerun the attention probe.")

st.subheader("Digit chain: the internal probe applied to P (cuts split index digits, not tokens)")
profiles = data.read(sel.runs, "attention_entanglement", None, where + sel.filters(role=False))
ui.show(fig.digit_chain_chart(profiles))

st.subheader("No-hair: the attention beside the weights")
ui.show(fig.no_hair_chart(summary))
pairs = summary[["run", "checkpoint"]].drop_duplicates()
labels = [f"{r} · {c}" for r, c in pairs.itertuples(index=False)]
chosen = st.selectbox("Run · checkpoint for the layer × head map", labels, index=len(labels) - 1)
run_name, checkpoint = pairs.iloc[labels.index(chosen)]
measures = [c for c in ("entropy_diff", "attention_tv", "token_cardy_c", "token_cardy_r2") if c in summary.columns]
measure = st.radio("Measure", measures, horizontal=True)
ui.show(fig.head_map_chart(summary[(summary["run"] == run_name) & (summary["checkpoint"] == checkpoint)], measure,
                           title=f"Layer × head: {measure} ({run_name}, {checkpoint})"))

st.subheader("Per run, checkpoint and L")
st.dataframe(digests.attention(summary), hide_index=True, width="stretch")
with st.expander("attention_summary rows"):
    st.dataframe(summary, hide_index=True, width="stretch")
if data.computed(sel.runs, "windows"):
    with st.expander("The token windows"):
        st.dataframe(data.read(sel.runs, "windows", None, [("probe", "==", "attention")]), hide_index=True, width="stretch")
ui.column_help("attention_summary", "attention_token_fits", "attention_token_cuts", "attention_entanglement", "windows")
