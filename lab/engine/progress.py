"""One overall progress bar for a run: units done / total, elapsed time and ETA (also on a cluster).

Rich draws it on stderr; ``enabled=False`` (``--quiet``) draws nothing.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator


class Bar:
    """``advance(label)`` moves the bar one unit and shows what finished last; ``step(label)`` shows
    where a long unit is (a forward pass of a model-scope probe) on a second line."""

    def __init__(self, advance: Callable[[str], None] = lambda label: None,
                 step: Callable[[str], None] = lambda label: None) -> None:
        self.advance, self.step = advance, step


@contextmanager
def progress_bar(total: int, done: int = 0, *, enabled: bool = True, title: str = "analysing") -> Iterator[Bar]:
    """The run's :class:`Bar` (drawing nothing when not ``enabled``)."""
    if not enabled:
        yield Bar()
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[last]}"))
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(title, total=total, completed=done, last="")
        inner = None

        def advance(label: str) -> None:
            nonlocal inner
            if inner is not None:  # the unit that reported steps is done
                bar.remove_task(inner)
                inner = None
            bar.update(task, advance=1, last=label)

        def step(label: str) -> None:
            nonlocal inner
            if inner is None:
                inner = bar.add_task("  in unit", total=None, last="")
            bar.update(inner, last=label)

        yield Bar(advance, step)
        if inner is not None:
            bar.remove_task(inner)
        bar.update(task, last="done")
