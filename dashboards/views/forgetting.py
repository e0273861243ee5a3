"""Forgetting: what fine-tuning cost the model on its --texts and on reference texts: KL(p_base ‖ p_tuned) and the
loss change with bootstrap intervals over windows, and how far the hidden states moved per layer."""

import streamlit as st

from dashboards import data, filters, ui
from lab.present import forgetting
from lab.present.figures import forgetting as fig

sel = filters.current()
ui.header("forgetting")
if not ui.has_table(sel, "forgetting", "forgetting", "forgetting", "forgetting_layers",
                    detail="Run `lab analyze CKPT --base BASE --probes forgetting --texts TUNING.txt --reference-texts "
                           "OTHER.txt` to add it."):
    st.stop()

# whole models: the module, layer and role filters do not apply
where = [f for f in sel.filters(role=False) if f[0] != "layer"]
rows = data.read(sel.runs, "forgetting", None, where)
if rows.empty:
    st.info("No forgetting rows in this selection: widen the filters in the sidebar.")
    st.stop()
layers = data.read(sel.runs, "forgetting_layers", None, where)
lengths = sorted(int(L) for L in rows["seq_len"].unique())
L = st.selectbox("Window length L", lengths, index=len(lengths) - 1)
rows, layers = rows[rows["seq_len"] == L], layers[layers["seq_len"] == L] if not layers.empty else layers
notes = sorted(set(rows["note"].dropna()) - {""}) if "note" in rows.columns else []
for note in notes:
    st.info(note)
if not (rows["text_set"] == "reference").any():
    st.caption("No reference texts in these runs: add `--reference-texts OTHER.txt` to see what was forgotten.")

ui.show(fig.kl_chart(rows))
ui.show(fig.layers_chart(layers))
st.dataframe(forgetting.digest(rows, layers), hide_index=True, width="stretch")
with st.expander("forgetting rows"):
    st.dataframe(rows, hide_index=True, width="stretch")
with st.expander("forgetting_layers rows"):
    st.dataframe(layers, hide_index=True, width="stretch")
ui.column_help("forgetting", "forgetting_layers")
