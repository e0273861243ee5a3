"""The dashboard pages, one Streamlit script per probe table family (run through ``dashboards/app.py``)."""
