"""Findings: what fine-tuning did, in sentences with numbers computed from the selected runs' tables,
each family's sentences followed by its headline figure (the report's first section, the same words)."""

import streamlit as st

from dashboards import data, filters, ui
from lab.present.findings import headline
from lab.present.sentences import markdown

sel = filters.current()
st.title("What fine-tuning did")
if not sel.runs:
    ui.no_runs(sel.results)
    st.stop()
st.caption("Every sentence is computed from the tables of the runs selected in the sidebar (each run at its last "
           "checkpoint); the numbers can be read off the figure under them. Provenance is on the Runs page.")

found = data.findings(sel.runs)
if not found:
    st.info("No table in the selected runs has findings to report.")
for number, family in enumerate(found, start=1):
    st.subheader(family.title)
    st.markdown("\n".join(("- **Across runs:** " if s.run is None else "- ") + markdown(s, links=False)
                          for s in family.sentences))
    chart = headline(family.key, sel.runs)
    if chart is not None:
        ui.show(chart)
