"""The pieces every family's findings are written with: a :class:`Sentence` of text and
:class:`Number` objects (each linked to its family's headline figure), the :class:`Writer` that
builds one, which rows a sentence is about (a run's last checkpoint, its measured rows), and the
comparison of a method's runs against full fine-tuning's taken as seeds (:func:`against_full`).

Each family's own sentences live with its record (``lab/present/families/KEY.py``);
:mod:`lab.present.findings` gathers them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from lab.present import load
from lab.present.picks import last_checkpoint
from lab.store import Run


def anchor(family: str) -> str:
    """The id of a family's headline figure, which its numbers link to."""
    return f"fig-{family}"


def fmt(value: float) -> str:
    """A number as the findings print it: three significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) or float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{float(value):.3g}"


@dataclass(frozen=True)
class Number:
    """A number in a sentence: its value, how it is printed and the figure it comes from."""

    name: str
    value: float
    figure: str

    @property
    def text(self) -> str:
        return fmt(self.value)


@dataclass
class Sentence:
    """A finding: text fragments and :class:`Number` objects, about one run (or, ``run=None``, comparing runs)."""

    family: str
    run: str | None
    parts: list = field(default_factory=list)

    def plain(self) -> str:
        """The sentence as plain text."""
        return "".join(p.text if isinstance(p, Number) else str(p) for p in self.parts)

    @property
    def numbers(self) -> dict[str, float]:
        """Every number of the sentence by name."""
        return {p.name: p.value for p in self.parts if isinstance(p, Number)}


def escape_markdown(text) -> str:
    """Text with Markdown's active characters escaped (run and module names come from files)."""
    out = str(text)
    for ch in ("\\", "|", "*", "_", "`", "[", "]", "<", ">", "#"):
        out = out.replace(ch, "\\" + ch)
    return out.replace("\n", " ")


def markdown(sentence: Sentence, links: bool = True) -> str:
    """The sentence as Markdown: each number bold, and with ``links`` a link to its figure's anchor."""
    parts = []
    for p in sentence.parts:
        if isinstance(p, Number):
            parts.append(f"[**{p.text}**](#{p.figure})" if links else f"**{p.text}**")
        else:
            parts.append(escape_markdown(p))
    return "".join(parts)


@dataclass
class FamilyFindings:
    """The sentences of one probe family, and the anchor of its headline figure."""

    key: str
    title: str
    anchor: str
    sentences: list[Sentence]


class Writer:
    """Builds one sentence: ``w.text("…").num("name", value)…``."""

    def __init__(self, family: str, run: str | None):
        self.sentence = Sentence(family, run)

    def text(self, s: str) -> "Writer":
        self.sentence.parts.append(s)
        return self

    def num(self, name: str, value, suffix: str = "") -> "Writer":
        self.sentence.parts.append(Number(name, float(value), anchor(self.sentence.family)))
        if suffix:
            self.sentence.parts.append(suffix)
        return self


def who(w: Writer, run: str, checkpoint: str | None, rows: pd.DataFrame) -> None:
    step = rows["step"].dropna().unique() if "step" in rows.columns else []
    where = checkpoint if checkpoint else ""
    if len(step) == 1:
        where += f", step {int(step[0])}"
    w.text(f"{run} ({where}): " if where else f"{run}: ")


def per_run(runs: Sequence[Run], table: str, columns=None) -> list[tuple[str, pd.DataFrame]]:
    out = []
    for run in runs:
        if run.has_table(table):
            rows = load.read(run, table, columns)
            if not rows.empty:
                out.append((run.name, rows))
    return out


def ranking(w: Writer, label: str, values: dict[str, float], name: str, *, descending: bool = True,
             unit: str = "") -> None:
    """'label: a 1.2 > b 0.8' over the runs, largest first (or smallest first)."""
    ordered = sorted(values.items(), key=lambda kv: -kv[1] if descending else kv[1])
    w.text(f"{label}: ")
    for i, (run, value) in enumerate(ordered):
        w.text(("" if i == 0 else (" > " if descending else " < ")) + f"{run} ").num(f"{name}[{run}]", value, unit)
    w.text(".")


FULL = "full"  # the deltas table's kind of a full fine-tune: what intruder counts and α shifts are held against


def configurations(runs: Sequence[Run]) -> dict[str, str]:
    """Each run's method with, for an adapter, its ranks at the last checkpoint ('lora r = 16'; 'full' as it is):
    runs of one configuration are the only ones :func:`against_full` may take as seeds of one another."""
    methods = load.run_methods(runs)
    out = {}
    for run in runs:
        method = methods.get(run.name, "")
        out[run.name] = method
        if not method or method == FULL or not run.has_table("deltas"):
            continue
        d = load.read(run, "deltas", ["checkpoint", "step", "rank_bound"])
        d = d[d["checkpoint"].astype(str) != "controls"]
        ck = last_checkpoint(d)
        ranks = sorted(int(r) for r in d.loc[d["checkpoint"].astype(str) == ck, "rank_bound"].dropna().unique())
        if 0 < len(ranks) <= 3:
            out[run.name] = f"{method} r = {'/'.join(str(r) for r in ranks)}"
    return out


def against_full(w: Writer, values: dict[str, float], methods: dict[str, str]) -> None:
    """Each other method's per-run values against full fine-tuning's, by :func:`lab.present.seeds.separated`
    (the runs of one method, or configuration, taken as its seeds): 'separated' only when the sets separate."""
    from lab.present.seeds import separated

    groups: dict[str, list[float]] = {}
    members: dict[str, list[str]] = {}
    for run, value in values.items():
        groups.setdefault(methods.get(run) or "unknown", []).append(value)
        members.setdefault(methods.get(run) or "unknown", []).append(run)
    reference = groups.get(FULL)
    if not reference or len(groups) < 2:
        return

    def who(method: str) -> str:
        runs = members[method]
        return f"{len(runs)} run{'s' if len(runs) > 1 else ''}: {', '.join(runs)}"

    verdicts: dict[str, list[str]] = {}  # one clause per verdict, naming every configuration that has it
    for method, mine in sorted(groups.items()):
        if method == FULL:
            continue
        if separated(mine, reference):
            verdict = "separated."
        elif min(len(mine), len(reference)) < 2:
            verdict = "not separated (one run on a side: no seeds to tell a difference from run-to-run spread)."
        else:
            verdict = "not separated (the runs' values overlap)."
        verdicts.setdefault(verdict, []).append(f"{method} ({who(method)})")
    for verdict, names in verdicts.items():
        w.text(f" {'; '.join(names)} against full fine-tuning ({who(FULL)}): {verdict}")
