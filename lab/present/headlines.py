"""One headline figure per probe family: the picture the findings' numbers link to.

Each figure shows the last checkpoint (in training order) of every run that computed the family,
each run in its own colour: the entanglement profile of one representative module with Page's curve,
the maximum and ln r; the σ spectrum of that module; an attention head's profile with both fitted
laws beside how far the attention moved; the largest γ against √ln L; each fine-tune pair's outside
distance beside its members' distances from the base (no-hair); how an adapter's energy is
shared among its units; the cross-term errors of averaging; the merge errors against rank k; α of the
base W beside W + ΔW by layer (esd); the intruder count at the default (ε, k) per layer and role; the
member × member cosine between updates (similarity); KL and loss change per text set (forgetting).
"""

from __future__ import annotations

from typing import Callable, Sequence

from lab.present import load
from lab.present.figures.common import Chart
from lab.present.sentences import anchor
from lab.store import Run

# every built-in family's headline now lives in its record (lab.present.families.KEY.headline)
HEADLINES: dict[str, Callable[[Sequence[Run]], Chart]] = {}


def headline(family: str, runs: Sequence[Run]) -> Chart | None:
    """The headline figure of ``family`` over ``runs`` (its anchor set), or None when no run computed it."""
    from lab.present.families import by_key

    record = by_key(family)
    draw = record.headline or HEADLINES.get(family)
    if draw is None or not load.computed(runs, record.tables[0]):
        return None
    chart = draw(runs)
    chart.anchor = anchor(family)
    return chart
