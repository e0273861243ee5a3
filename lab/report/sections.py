"""The report's section builders, one per probe family: which charts and summary tables a
reader gets from each computed table.

To keep a report readable on large runs it shows every run and layer in overview figures
(``section.chart``: the HTML and the PDF) and, per run, one representative module per role (the
middle layer) in detail figures (``section.detail``: the HTML only); the dashboard has the rest.
Both take the function that draws the figure (``functools.partial`` of a figure function), so a
figure no requested format shows is never drawn.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from lab.report.document import Section
from lab.store import Run


def _last(rows: pd.DataFrame) -> str:
    """The last checkpoint in training order among the rows (largest step, then name)."""
    from lab.present.findings import last_checkpoint

    return last_checkpoint(rows)


# every built-in family's section now lives in its record (lab.present.families.KEY.section)
BUILDERS: dict[str, Callable[[Section, list[Run]], None]] = {}
