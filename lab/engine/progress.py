"""One overall progress bar for a run: units done / total, elapsed time and ETA (also on a cluster).

Rich draws it on stderr; ``enabled=False`` (``--quiet``) draws nothing.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def progress_bar(total: int, done: int = 0, *, enabled: bool = True, title: str = "analysing") -> Iterator[Callable[[str], None]]:
    """A callable ``advance(label)`` that moves the bar one unit and shows what finished last."""
    if not enabled:
        yield lambda label: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[last]}"))
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(title, total=total, completed=done, last="")

        def advance(label: str) -> None:
            bar.update(task, advance=1, last=label)

        yield advance
        bar.update(task, last="done")
