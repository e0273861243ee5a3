"""lab dashboard: the Streamlit entry script. Draws the shared sidebar filters, then the page.

Run with ``lab dashboard RESULTS_DIR`` (or ``streamlit run dashboards/app.py -- RESULTS_DIR``).
The pages come from ``dashboards.navigation``: one per probe family the schema declares.
"""

import streamlit as st

from dashboards import data, filters, navigation

st.set_page_config(page_title="lab dashboard", page_icon=":material/science:", layout="wide")

PAGES = [st.Page(view.script, title=view.title, icon=view.icon, default=view.key == navigation.RUNS)
         for view in navigation.views()]

page = st.navigation(PAGES)
st.sidebar.markdown("**lab**: what did fine-tuning do to the weights?")
filters.sidebar(data.results_dir())
page.run()
