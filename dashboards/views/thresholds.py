"""LoRA norm thresholds: the largest γ against √ln L (the asymptotic theorem's scale drawn in), the
ratio by layer and L, the LoRA term beside the whole query projection, and the numbers."""

import streamlit as st

from dashboards import data, filters, ui
from lab.present import digests
from lab.present.figures import thresholds as fig
from lab.present.figures.common import ASYMPTOTIC

sel = filters.current()
ui.header("thresholds")
if not ui.has_table(sel, "thresholds", "thresholds", "thresholds", "threshold_growth", "windows",
                    detail="Run `lab analyze ... --probes thresholds` to add it (needs a tokenizer)."):
    st.stop()

rows = data.read(sel.runs, "thresholds", None, sel.filters(role=False))
if rows.empty:
    st.info("No thresholds rows in this selection: widen the filters in the sidebar.")
    st.stop()
st.warning(f"Hu et al.'s bound is asymptotic in L (o(√ln L) vs Θ(√ln L), constants unknown): {ASYMPTOTIC}.")

st.subheader("Growth with the window length")
ui.show(fig.growth_chart(rows))
st.subheader("Ratio to √ln L by layer")
ui.show(fig.ratio_chart(rows))
if rows["gamma_lora"].notna().any():
    ui.show(fig.lora_term_chart(rows))

st.subheader("Per run, checkpoint and L")
st.dataframe(digests.thresholds(rows), hide_index=True, width="stretch")
if data.computed(sel.runs, "threshold_growth"):
    with st.expander("threshold_growth: the slope of the largest γ against √ln L, per layer"):
        st.dataframe(data.read(sel.runs, "threshold_growth", None, sel.filters(role=False)), hide_index=True,
                     width="stretch")
with st.expander("thresholds rows"):
    st.dataframe(rows, hide_index=True, width="stretch")
ui.column_help("thresholds", "threshold_growth", "windows")
