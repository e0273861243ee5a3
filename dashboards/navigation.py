"""The dashboard's page list: Findings (the landing page: what fine-tuning did, in numbers, with one
headline figure per family), Runs, then one page per probe family whose tables the schema declares
(``lab.present.theory.families``), each the script ``views/KEY.py``.

A family whose probe has not landed (its table is not in ``lab.store.schema.TABLES``) has no page;
declaring the table and adding ``views/KEY.py`` is what makes one appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.present.theory import families

VIEWS = Path(__file__).with_name("views")
FINDINGS = "findings"
RUNS = "runs"
SHOWN_ON_RUNS = "deltas"  # the Runs page shows the updates read next to each run's provenance
ICONS = {FINDINGS: ":material/lightbulb:", RUNS: ":material/folder_open:", "entanglement": ":material/timeline:",
         "spectra": ":material/bar_chart:", "attention": ":material/visibility:", "thresholds": ":material/speed:",
         "no_hair": ":material/compare_arrows:", "msu": ":material/extension:", "msu_pairs": ":material/join:",
         "merge": ":material/merge:", "esd": ":material/ssid_chart:", "intruders": ":material/call_split:",
         "similarity": ":material/grid_on:", "forgetting": ":material/history:"}


@dataclass(frozen=True)
class View:
    """One page: its key (the family's, or ``runs``), title, Streamlit script and icon."""

    key: str
    title: str
    script: Path
    icon: str = ":material/table:"


def views() -> list[View]:
    """The pages in reading order: Findings, Runs, then each declared family that is not shown on Runs."""
    pages = [View(FINDINGS, "Findings", VIEWS / f"{FINDINGS}.py", ICONS[FINDINGS]),
             View(RUNS, "Runs", VIEWS / f"{RUNS}.py", ICONS[RUNS])]
    for family in families():
        if family.key != SHOWN_ON_RUNS:
            pages.append(View(family.key, family.title, VIEWS / f"{family.key}.py", ICONS.get(family.key, View.icon)))
    return pages
