"""Page furniture shared by the dashboard pages: headers with the theory, charts with captions,
the "not computed in this run" notice and column meanings from the schema."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import data
from lab.present.figures.common import Chart
from lab.present.families import by_key
from lab.present.family import NOT_COMPUTED, columns, table_description


def header(key: str) -> None:
    """The page title and, folded, what is measured and which theory it is compared with."""
    family = by_key(key)
    st.title(family.title)
    with st.expander("What is measured, and the theory it is held against"):
        st.markdown(family.theory)


def not_computed(key: str, detail: str = "") -> None:
    """Say plainly that this family's table is absent from the selected runs."""
    family = by_key(key)
    st.info(f"**{family.title}: {NOT_COMPUTED}.** {detail}".strip())


def show(chart: Chart) -> None:
    """A chart with its title and caption (the figure is freed after drawing)."""
    st.pyplot(chart.figure, width="stretch", alt=chart.title)
    st.caption(f"**{chart.title}.** {chart.caption}")
    chart.close()


def column_help(*tables: str) -> None:
    """Folded: each column's meaning, taken from lab.store.schema."""
    for table in tables:
        cols = columns(table)
        if not cols:
            continue
        with st.expander(f"Columns of `{table}`: {table_description(table)}"):
            st.dataframe(pd.DataFrame(cols, columns=["column", "meaning"]), hide_index=True, width="stretch")


def has_table(sel, key: str, table: str, *help_tables: str, detail: str = "") -> bool:
    """Whether the selected runs hold ``table``; if not, say why here (no runs, or not computed) and
    return False so that the page stops."""
    if not sel.runs:
        no_runs(sel.results)
        return False
    if not data.computed(sel.runs, table):
        not_computed(key, detail)
        column_help(*(help_tables or (table,)))
        return False
    return True


def no_runs(results) -> None:
    st.warning(f"No lab runs in `{results}`. Run `lab analyze CHECKPOINT --out {results}` first.")
