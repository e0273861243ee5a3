"""The dashboard's renderer of a family's section spec (:mod:`lab.present.page`): one page per family,
drawn from its declaration alone. Rows come from inside the sidebar's selection, each choice is a
widget, every figure is drawn, tables are interactive frames (reference rows folded)."""

from __future__ import annotations

from typing import Callable

import pandas as pd
import streamlit as st

from dashboards import data, filters, ui
from lab.present.families import by_key
from lab.present.family import rows_section
from lab.present.figures.common import Chart
from lab.present.page import Page


class DashboardPage(Page):
    """A family's section on a dashboard page, inside the selection ``sel`` (:func:`dashboards.filters.current`)."""

    interactive = True

    def __init__(self, sel: filters.Selection, key: str):
        self.sel = sel
        self.key = key
        self.runs = list(sel.runs)

    def read(self, table, columns=None, filters=(), *, runs=None, checkpoint=True, role=True, step=True,
             layer=True) -> pd.DataFrame:
        selection = self.sel.filters(checkpoint=checkpoint, role=role, step=step, layer=layer)
        return data.read(self.runs if runs is None else runs, table, columns, list(filters) + selection)

    def computed(self, table, runs=None) -> bool:
        return data.computed(self.runs if runs is None else runs, table)

    def index(self) -> pd.DataFrame:
        return self.sel.index

    def choose(self, label, options, default, *, help="", horizontal=False):
        options = list(options)
        at = options.index(default) if default in options else 0
        widget = f"{self.key}:{label}"
        if horizontal:
            return st.radio(label, options, index=at, horizontal=True, help=help or None, key=widget)
        return st.selectbox(label, options, index=at, help=help or None, key=widget)

    def choose_many(self, label, options, default, *, help=""):
        options = list(options)
        return st.multiselect(label, options, default=[d for d in default if d in options], help=help or None,
                              key=f"{self.key}:{label}")

    def heading(self, text: str) -> None:
        st.subheader(text)

    def figure(self, draw: Callable[[], Chart], *, detail: bool = False) -> None:
        ui.show(draw())

    def table(self, title, frame, caption="", *, reference=False) -> None:
        if reference:
            with st.expander(title):
                st.dataframe(frame, hide_index=True, width="stretch")
            return
        st.markdown(f"**{title}**")
        st.dataframe(frame, hide_index=True, width="stretch")
        if caption:
            st.caption(caption)

    def message(self, text: str) -> None:
        st.info(text)


def render(key: str) -> None:
    """The page of the family ``key``: its title and theory, then its section (or, where its table is
    absent, why), then what each of its tables' columns means."""
    family = by_key(key)
    sel = filters.current()
    ui.header(key)
    if not ui.has_table(sel, key, family.tables[0], *family.tables, detail=family.hint):
        st.stop()
    (family.section or rows_section(family))(DashboardPage(sel, key))
    ui.column_help(*family.tables)
