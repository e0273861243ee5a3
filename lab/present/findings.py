"""What fine-tuning did, in sentences with numbers, computed from the stored tables (never written by hand).

:func:`summarize` reads the runs of a results folder and returns, per probe family whose table
some run holds, a few :class:`Sentence` objects: one per run that has the table (about its last
checkpoint in training order) and, when several runs have it, one comparing them. A run without
the table gets no sentence. Each number is a :class:`Number` that knows the figure it can be read
from (the family's headline figure, ``fig-<family>``), so the HTML links it, the PDF refers to
it and the dashboard shows it beside the figure.

Definitions used below (the tests recompute each with pandas on the parquet files):

* the *last checkpoint* of a run in a table: the largest ``step`` (a checkpoint without a step
  counts as before every step), ties broken by the checkpoint name;
* *measured* rows: ``source`` absent or ``delta`` (controls and base weights left out);
* means are arithmetic over the rows (modules, heads, windows) at that checkpoint; ``±`` is the
  sample standard deviation;
* a pair of updates (adapter_similarity) is *compared* when its note is empty; its numbers are means
  over the modules both members have, and two pairs are "separated over modules" by
  :func:`lab.present.seeds.separated` on their per-module cosines;
* forgetting numbers are a run's rows at its last checkpoint and longest window length; one text set
  or run "moved more" only where the bootstrap intervals of the two are disjoint.
"""

from __future__ import annotations

from typing import Sequence

from lab.present import load
from lab.present.families import by_key, families
from lab.present.figures.common import Chart
from lab.present.sentences import FamilyFindings, anchor
from lab.store import Run

def summarize(runs: Sequence[Run]) -> list[FamilyFindings]:
    """The findings of every family some run computed, in the families' reading order."""
    found = [summarize_family(family.key, runs) for family in families()]
    return [f for f in found if f is not None]


def summarize_family(key: str, runs: Sequence[Run]) -> FamilyFindings | None:
    """The findings of one family, or None when no run computed it or it has nothing to say."""
    family = by_key(key)
    if family.findings is None or not load.computed(runs, family.tables[0]):
        return None
    sentences = family.findings(runs)
    return FamilyFindings(key, family.title, anchor(key), sentences) if sentences else None


def headline(key: str, runs: Sequence[Run]) -> Chart | None:
    """The headline figure of the family ``key`` over ``runs`` (its anchor set, which the findings' numbers
    link to), or None when the family has none or no run computed it."""
    family = by_key(key)
    if family.headline is None or not load.computed(runs, family.tables[0]):
        return None
    chart = family.headline(runs)
    chart.anchor = anchor(key)
    return chart
