"""lab's Streamlit dashboard: ``app.py`` and one page per probe table family (``views/``; not ``pages/``, which Streamlit would also serve as pages of its own).

Served by ``lab dashboard RESULTS_DIR``; shipped as a package so the command finds it after any
kind of install.
"""

from pathlib import Path

APP = Path(__file__).with_name("app.py")
