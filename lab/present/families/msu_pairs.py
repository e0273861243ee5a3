"""The several adapters: stacking vs averaging family (msu_pairs): its theory, findings, headline figure and section."""

from __future__ import annotations

from functools import partial
from typing import Sequence

from lab.present import digests, load
from lab.present.family import Family
from lab.present.figures import msu as figures
from lab.present.figures.common import Chart
from lab.present.page import Headline, Page
from lab.present.sentences import Sentence, Writer, per_run
from lab.store import Run

THEORY = (
    'For several adapters of one base, per module: concatenating their units, [B_1 … B_J]·[s_1A_1; …; s_JA_J], '
    "equals summing their updates exactly (any ranks and scales; FLoRA's stacking), while index-wise averaging of "
    "the factors (PEFT's 'linear', FedAvg) adds cross terms B_j·A_k (FLoRA's aggregation noise). Its relative error"
    ' against the exact mean depends on the arbitrary order of ranks: its spread over seeded rank permutations '
    'shows by how much.'
)


def findings(runs: Sequence[Run]) -> list[Sentence]:
    """Per run: the largest error of concatenation against the exact sum, and the mean error of index-wise averaging
    (PEFT's linear, with its range over rank permutations) and of FedAvg against the exact mean."""
    out = []
    for run, rows in per_run(runs, "msu_pairs"):
        w = Writer("msu_pairs", run)
        members = ", ".join(sorted(rows["members"].dropna().astype(str).unique()))
        w.text(f"{run} ({members}): concatenating the adapters' units equals summing their updates to ")
        w.num("concat_sum_error_max", rows["concat_sum_error"].max(), " (largest relative error over ")
        w.num("modules", len(rows), " modules)")
        linear = rows.dropna(subset=["cross_term_error"])
        if not linear.empty:
            w.text("; index-wise averaging (PEFT's linear) misses the exact mean by ").num("cross_term_error_mean", linear["cross_term_error"].mean())
            w.text(" (mean relative error), from ").num("cross_term_error_min", linear["cross_term_error_min"].min())
            w.text(" to ").num("cross_term_error_max", linear["cross_term_error_max"].max(), " over rank permutations")
            w.text("; FedAvg's mean of factors by ").num("fedavg_error_mean", linear["fedavg_error"].mean())
        skipped = len(rows) - len(linear)
        if skipped:
            w.text("; ").num("heterogeneous", skipped, " modules have different ranks (no index-wise average)")
        w.text(".")
        out.append(w.sentence)
    return out


def headline(runs: Sequence[Run]) -> Chart:
    """The cross-term errors of index-wise averaging per module, with their range over rank permutations."""
    return figures.pairs_chart(load.read_runs(runs, "msu_pairs"))


def section(page: Page) -> None:
    """The cross-term errors per module with their spread over rank permutations, and the table's numbers."""
    # a row joins several checkpoints ('a+b'): the checkpoint and step filters do not apply to it
    pairs = page.read("msu_pairs", checkpoint=False, step=False)
    if pairs.empty:
        page.message("No msu_pairs rows in these runs (or in this selection: widen the filters in the sidebar).")
        return
    page.figure(Headline(partial(figures.pairs_chart, pairs)))
    page.table("Concatenation vs averaging per module", digests.pairs(pairs),
               "relative Frobenius errors against the exact sum / mean of the updates")


FAMILY = Family(
    'msu_pairs', 'Several adapters: stacking vs averaging', ('msu_pairs',), THEORY,
    icon=':material/join:',
    hint='Run `lab analyze ADAPTER_1 ADAPTER_2 ... --probes msu_pairs` to add it.',
    findings=findings, headline=headline, section=section,
)
