"""Pages for tables that no probe writes yet: say "not computed in this run", and when a run has
the table, draw what the design names (or show the rows) so a new probe is visible at once."""

from __future__ import annotations

from typing import Callable

import streamlit as st

from dashboards import data, filters, ui


def page(sel: "filters.Selection", key: str, table: str, chart: Callable | None) -> None:
    """The body of a page over ``table``: notice when absent, else its chart (if the columns allow) and rows."""
    if not ui.has_table(sel, key, table):
        return
    rows = data.read(sel.runs, table, None, sel.filters())
    drawn = chart(rows) if chart is not None else None
    if drawn is not None:
        ui.show(drawn)
    else:
        st.caption("No figure is drawn for this table's columns yet; its rows are below.")
    st.dataframe(rows, hide_index=True, width="stretch")
    ui.column_help(table)
