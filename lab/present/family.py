"""A probe family, declared once: what the reader meets of it everywhere.

A :class:`Family` names its tables (declared in the schema with each column's meaning), states
what is measured and which theory it is held against, and carries the three things the report and
the dashboard draw from it: its findings sentences, its headline figure and its section (the
figures and tables in order, with captions, as one spec both render: :mod:`lab.present.page`).
The built-in families live one per module in :mod:`lab.present.families`, in reading order; a
plugin file (``lab analyze --plugin``) registers its own with
:func:`lab.present.families.register`, and gets a dashboard page and a report section from that
declaration alone (a family without a section shows its tables' rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from lab.store.schema import TABLES

if TYPE_CHECKING:  # only for the annotations: the record itself imports nothing heavy
    from lab.present.figures.common import Chart
    from lab.present.page import Page
    from lab.present.sentences import Sentence
    from lab.store import Run

NOT_COMPUTED = "not computed in this run"  # what a page or section says when its table is absent


@dataclass(frozen=True)
class Family:
    """A probe family.

    ``key``: its name (the dashboard page's URL, the report section's anchor); ``title``;
    ``tables``: the tables it reads, the first one deciding whether a run computed it; ``theory``:
    what is measured and the theory it is held against (Markdown); ``icon``: the dashboard page's
    (a Streamlit ``:material/...:`` name); ``hint``: how to compute it, said where it is absent;
    ``findings(runs)``: its sentences; ``headline(runs)``: the figure they link to; ``section(page)``:
    its figures and tables (:mod:`lab.present.page`); ``on_runs_page``: shown on the Runs page
    rather than on a page of its own (the updates read); ``cost``: how long building its findings, figures
    and section takes beside the other families' (about the CPU seconds of a report of the demo's runs), so
    that a report's workers take the longest first and end together (only the order: never the content).
    """

    key: str
    title: str
    tables: tuple[str, ...]
    theory: str
    icon: str = ":material/table:"
    hint: str = ""
    findings: Callable[[Sequence["Run"]], list["Sentence"]] | None = None
    headline: Callable[[Sequence["Run"]], "Chart"] | None = None
    section: Callable[["Page"], None] | None = None
    on_runs_page: bool = False
    cost: float = 1.0

    @property
    def declared(self) -> bool:
        """Whether the schema declares the family's first table (a family whose probe has not landed has
        neither a page nor a section)."""
        return self.tables[0] in TABLES


def columns(table: str) -> list[tuple[str, str]]:
    """(column, meaning) pairs of a declared table, from the schema; empty for a table not yet declared."""
    declared = TABLES.get(table)
    return [(c.name, c.description) for c in declared.columns] if declared else []


def table_description(table: str) -> str:
    """A table's one-line description from the schema ('' when not declared)."""
    declared = TABLES.get(table)
    return declared.description if declared else ""


ROWS_SHOWN = 20  # rows per table in the section of a family that declares no section of its own


def rows_section(family: Family) -> Callable[["Page"], None]:
    """The section of a family without one of its own (a plugin's): per computed table, its first rows."""

    def section(page: "Page") -> None:
        for table in family.tables:
            if page.computed(table):
                rows = page.read(table)
                page.table(f"{table}: first {min(ROWS_SHOWN, len(rows))} of {len(rows)} rows", rows.head(ROWS_SHOWN),
                           table_description(table))
    return section
