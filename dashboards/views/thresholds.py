"""LoRA norm thresholds: the largest γ against √ln L in both scales (Hu et al.'s literal β = 1 form and
Alman–Song's, √d_head larger), the ratio by layer and L, the largest logit against ln L, the
extreme-value control beside the measured maxima, the LoRA term beside the whole query projection,
and the numbers."""

import streamlit as st

from dashboards import data, filters, ui
from lab.present import digests
from lab.present.figures import thresholds as fig
from lab.present.findings import ASYMPTOTIC_CAVEAT

sel = filters.current()
ui.header("thresholds")
if not ui.has_table(sel, "thresholds", "thresholds", "thresholds", "threshold_growth", "windows",
                    detail="Run `lab analyze ... --probes thresholds` to add it (needs a tokenizer)."):
    st.stop()

rows = data.read(sel.runs, "thresholds", None, sel.filters(role=False))
if rows.empty:
    st.info("No thresholds rows in this selection: widen the filters in the sidebar.")
    st.stop()
st.warning(ASYMPTOTIC_CAVEAT)

st.subheader("Growth with the window length, in both scales")
st.caption("Hu et al. write softmax(Q·Kᵀ·β) with β = 1 (the head's 1/√d_head split as d_head^(−1/4) on q and on k); "
           "the bound they borrow is Alman & Song's, exp(Q·Kᵀ/d) (d_head^(+1/4) on each): the same maxima, √d_head apart.")
hu, alman_song = st.tabs(["Hu et al.'s β = 1 scale", "Alman–Song's scale"])
with hu:
    ui.show(fig.growth_chart(rows))
    ui.show(fig.ratio_chart(rows))
with alman_song:
    ui.show(fig.growth_chart(rows, convention="as"))
    ui.show(fig.ratio_chart(rows, convention="as"))
st.subheader("The largest logit against ln L")
ui.show(fig.logit_chart(rows))
st.subheader("The extreme-value control")
ui.show(fig.control_chart(rows))
if rows["gamma_lora"].notna().any():
    ui.show(fig.lora_term_chart(rows))

st.subheader("Per run, checkpoint and L")
st.dataframe(digests.thresholds(rows), hide_index=True, width="stretch")
if data.computed(sel.runs, "threshold_growth"):
    with st.expander("threshold_growth: per layer, the slope of the largest γ and of the control against √ln L, "
                     "and of the largest logit against ln L (R² only from three lengths)"):
        st.dataframe(data.read(sel.runs, "threshold_growth", None, sel.filters(role=False)), hide_index=True,
                     width="stretch")
with st.expander("thresholds rows"):
    st.dataframe(rows, hide_index=True, width="stretch")
ui.column_help("thresholds", "threshold_growth", "windows")
