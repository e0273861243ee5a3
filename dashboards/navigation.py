"""The dashboard's page list: Findings (the landing page: what fine-tuning did, in numbers, with one
headline figure per family), Runs, then one page per probe family whose tables the schema declares
(:func:`lab.present.families.families`), each drawn from the family's declaration by
:func:`dashboards.page.render`: there is no page script of any family's own.

A family whose probe has not landed (its table is not in ``lab.store.schema.TABLES``) has no page;
declaring the table and registering the family is what makes one appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from lab.present.families import families

VIEWS = Path(__file__).with_name("views")
FINDINGS = "findings"
RUNS = "runs"


@dataclass(frozen=True)
class View:
    """One page: its key (the family's, or ``findings``/``runs``), title, icon, and what draws it: a
    Streamlit script or a function of no arguments."""

    key: str
    title: str
    icon: str = ":material/table:"
    script: Path | None = None
    draw: Callable[[], None] | None = None

    @property
    def page(self) -> Path | Callable[[], None]:
        """What ``st.Page`` runs."""
        return self.script if self.script is not None else self.draw


def views() -> list[View]:
    """The pages in reading order: Findings, Runs, then each declared family not shown on Runs."""
    from dashboards.page import render

    pages = [View(FINDINGS, "Findings", ":material/lightbulb:", VIEWS / f"{FINDINGS}.py"),
             View(RUNS, "Runs", ":material/folder_open:", VIEWS / f"{RUNS}.py")]
    for family in families():
        if family.on_runs_page:
            continue
        pages.append(View(family.key, family.title, family.icon, draw=partial(render, family.key)))
    return pages
