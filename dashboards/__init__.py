"""lab's Streamlit dashboard: ``app.py``, the page list (``navigation``) and one page per probe
table family (``views/``; not ``pages/``, which Streamlit would also serve as pages of its own).

Served by ``lab dashboard RESULTS_DIR`` (``dashboards/cli.py``); shipped as a package so the
command finds it after any kind of install. The app reads results through ``lab.present`` and
``lab.store`` and never imports the command or the reports.
"""

from pathlib import Path

APP = Path(__file__).with_name("app.py")
RESULTS_ENV = "LAB_RESULTS_DIR"  # how the app learns the results folder (``lab dashboard`` sets it; usable without it)
