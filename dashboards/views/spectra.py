"""Rank spectra: singular values on a log scale, effective/stable rank by layer, energy ranks."""

import streamlit as st

from dashboards import data, filters, ui
from lab.present.figures import spectra as fig
from lab.present.frames import distinct, measured

sel = filters.current()
ui.header("spectra")
if not ui.has_table(sel, "spectra", "spectra", "spectra", "singular_values",
                    detail="Run `lab analyze ... --probes spectra` to add it."):
    st.stop()

spectra = data.read(sel.runs, "spectra", None, sel.filters())
spectra = measured(spectra)
if spectra.empty:
    st.info("No spectra in this selection: widen the filters in the sidebar.")
    st.stop()

st.subheader("Singular values")
modules = distinct(sel.index, "module")
chosen = st.multiselect("Modules", modules, default=modules[len(modules) // 2: len(modules) // 2 + 1])
if data.computed(sel.runs, "singular_values") and chosen:
    sv = data.read(sel.runs, "singular_values", None, [("module", "in", chosen)] + sel.filters(role=False))
    ui.show(fig.sigma_chart(sv))
elif not data.computed(sel.runs, "singular_values"):
    ui.not_computed("spectra", "(the singular_values table is absent.)")

st.subheader("Ranks by layer")
ui.show(fig.ranks_chart(spectra))
ui.show(fig.energy_chart(spectra))
with st.expander("spectra rows"):
    st.dataframe(spectra, hide_index=True, width="stretch")
ui.column_help("spectra", "singular_values")
