"""One colour per run, the same in every figure of a report and of the dashboard.

The colours are assigned once per results folder, to the run names in sorted order
(:func:`use`), so a run keeps its colour from the first figure to the last and from the report
to the dashboard. Within a run, checkpoints differ by opacity (earlier ones faint, the last one
solid) and roles or methods by line style, so a legend of 4 runs × 3 checkpoints is 4 colour
entries, one "fainter: earlier" entry and a few styles, not twelve colours that repeat.

When the runs use more than one fine-tuning method (``methods``: run -> lora, dora, loha, ...),
the colours go to the runs in (method, name) order, so the runs of one method sit next to each other
in every legend, and each legend entry names its run's method ("lora-r8 (lora)").

Theory lines (Page's curve, maxima, controls, ceilings) use the greys and the red of
``lab.present.figures.common.THEORY``, which the run palette leaves out, so a run's colour
never reads as theory.
"""

from __future__ import annotations

from contextvars import ContextVar
from contextlib import contextmanager
from typing import Iterable, Iterator, Mapping

import matplotlib

# tab10 without its red (the rank ceiling) and grey (theory lines): eight run colours that stay
# distinguishable in print and for the common colour-vision deficiencies.
_TAB10 = matplotlib.colormaps["tab10"].colors
RUN_PALETTE: tuple[tuple[float, float, float], ...] = tuple(c for i, c in enumerate(_TAB10) if i not in (3, 7))

_CURRENT: ContextVar[dict[str, int] | None] = ContextVar("lab_run_colours", default=None)
_LABELS: ContextVar[dict[str, str] | None] = ContextVar("lab_run_labels", default=None)
_FALLBACK: dict[str, int] = {}  # used where no results folder set the colours (a notebook, a single figure)


def use(run_names: Iterable[str], methods: Mapping[str, str] | None = None) -> dict[str, tuple[float, float, float]]:
    """Give each run its colour for the figures drawn from now on in this context (a report being
    built, a dashboard script run); returns run -> colour. The order is the runs' sorted names, or
    (method, name) when ``methods`` (run -> method) names more than one method."""
    names = sorted(set(map(str, run_names)))
    methods = {name: str((methods or {}).get(name) or "") for name in names}
    several = len({m for m in methods.values() if m}) > 1
    if several:
        names.sort(key=lambda name: (methods[name], name))
    mapping = {name: i for i, name in enumerate(names)}
    _CURRENT.set(mapping)
    _LABELS.set({name: f"{name} ({methods[name]})" for name in names if methods[name]} if several else {})
    return {name: RUN_PALETTE[i % len(RUN_PALETTE)] for name, i in mapping.items()}


@contextmanager
def using(run_names: Iterable[str], methods: Mapping[str, str] | None = None) -> Iterator[dict[str, tuple[float, float, float]]]:
    """:func:`use` for the duration of a ``with`` block (the previous assignment is restored after)."""
    token, labels = _CURRENT.set(None), _LABELS.set(None)
    try:
        yield use(run_names, methods)
    finally:
        _CURRENT.reset(token)
        _LABELS.reset(labels)


def run_label(run) -> str:
    """How a legend names ``run``: its name, with its method when the runs use several methods."""
    name = "" if run is None else str(run)
    return (_LABELS.get() or {}).get(name, name)


def run_colour(run) -> tuple[float, float, float]:
    """The colour of ``run``; a run the assignment does not know gets the next free colour."""
    mapping = _CURRENT.get()
    if mapping is None:
        mapping = _FALLBACK
    name = "" if run is None else str(run)
    if name not in mapping:
        mapping[name] = len(mapping)
    return RUN_PALETTE[mapping[name] % len(RUN_PALETTE)]


def checkpoint_alpha(position: int, count: int) -> float:
    """Opacity of the ``position``-th of ``count`` checkpoints of a run in training order: the last
    one solid, earlier ones fainter the earlier they are."""
    if count <= 1 or position >= count - 1:
        return 1.0
    return 0.25 + 0.45 * position / (count - 1)
