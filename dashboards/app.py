"""lab dashboard: the Streamlit entry script. Draws the shared sidebar filters, then the page.

Run with ``lab dashboard RESULTS_DIR`` (or ``streamlit run dashboards/app.py -- RESULTS_DIR``).
The pages come from ``dashboards.navigation``: the findings first, then Runs and one page per probe
family the schema declares.
"""

import streamlit as st

from dashboards import data, filters, navigation
from lab.present import colours
from lab.present.families import load_recorded_plugins

st.set_page_config(page_title="lab dashboard", page_icon=":material/science:", layout="wide")

results = data.results_dir()
every_run = data.runs(results) if results.is_dir() else []
load_recorded_plugins(every_run)  # the families a run's plugin files register get pages too (before the page list)

PAGES = [st.Page(view.page, title=view.title, icon=view.icon, url_path=view.key, default=view.key == navigation.FINDINGS)
         for view in navigation.views()]

page = st.navigation(PAGES)
st.sidebar.markdown("**lab**: what did fine-tuning do to the weights?")
# one colour per run on every page, the report's: assigned over all runs of the folder, not the selection
colours.use([r.name for r in every_run], data.run_methods(every_run))
filters.sidebar(results)
page.run()
