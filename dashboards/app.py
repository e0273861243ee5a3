"""lab dashboard: the Streamlit entry script. Draws the shared sidebar filters, then the page.

Run with ``lab dashboard RESULTS_DIR`` (or ``streamlit run dashboards/app.py -- RESULTS_DIR``).
"""

from pathlib import Path

import streamlit as st

from dashboards import data, filters

st.set_page_config(page_title="lab dashboard", page_icon=":material/science:", layout="wide")

HERE = Path(__file__).parent
PAGES = [
    st.Page(HERE / "views" / "runs.py", title="Runs", icon=":material/folder_open:", default=True),
    st.Page(HERE / "views" / "entanglement.py", title="Internal entanglement", icon=":material/timeline:"),
    st.Page(HERE / "views" / "spectra.py", title="Rank spectra", icon=":material/bar_chart:"),
    st.Page(HERE / "views" / "attention.py", title="Attention", icon=":material/visibility:"),
    st.Page(HERE / "views" / "thresholds.py", title="Thresholds", icon=":material/straighten:"),
    st.Page(HERE / "views" / "msu.py", title="MSU and merges", icon=":material/extension:"),
]

page = st.navigation(PAGES)
st.sidebar.markdown("**lab**: what did fine-tuning do to the weights?")
filters.sidebar(data.results_dir())
page.run()
