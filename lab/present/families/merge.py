"""The merges family (merge, merge_eval): its theory, findings, headline figure and section."""

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
    'lab merge writes a loadable PEFT adapter from several adapters and records, per module, its relative Frobenius'
    ' error against the exact weighted sum T = Σ_j w_j·s_j·B_j·A_j: stack (exact, by concatenation), linear '
    '(index-wise average: cross terms), svd (the best rank-k approximation of T), lego (LoRA-LEGO, arXiv '
    "2409.16167: k-means over the pooled units, each centroid rescaled to its members' mean norm, the output × "
    "√(r/k); data-free) and lego-oracle (the lab's earlier variant, output scale fitted to T itself: an oracle). "
    'The floor for any merge of rank k is the Eckart–Young error √(Σ_{i>k} σ_i²)/‖T‖_F, drawn beside the methods; '
    'svd reaches it by construction, so merges are also judged by what LEGO claims, several tasks in one adapter: '
    'with --eval-texts, the held-out loss of the merge, of each input adapter and of the base on each text set '
    "(merge_eval), under the base's own fine-tuning objective."
)


def findings(runs: Sequence[Run]) -> list[Sentence]:
    """Per merge run: each merged adapter's mean error against the exact weighted sum beside the best rank-k error,
    best first; per text set of merge_eval, the held-out loss of the base, the best input adapter and each merge."""
    out = []
    for run, rows in per_run(runs, "merge"):
        w = Writer("merge", run)
        w.text(f"{run}: relative error against the exact weighted sum, mean over modules: ")
        by = rows.groupby(["method", "checkpoint"], sort=True).agg(k=("k", "max"), error=("rel_fro_error", "mean"),
                                                                    optimal=("optimal_rel_fro_error", "mean"))
        for i, ((method, merged), r) in enumerate(by.sort_values("error").iterrows()):
            named = f"{method} ({merged}, k = " if merged != method else f"{method} (k = "
            w.text(("" if i == 0 else "; ") + named).num(f"k[{merged}]", r["k"], ") ")
            w.num(f"rel_fro_error[{merged}]", r["error"], " (best rank-k ").num(f"optimal_rel_fro_error[{merged}]", r["optimal"], ")")
        w.text(".")
        out.append(w.sentence)
    for run, rows in per_run(runs, "merge_eval"):
        for texts, g in digests.merge_eval(rows).groupby("texts", sort=True):
            w = Writer("merge", run)
            w.text(f"{run}, held-out loss on {texts} ({g['objective'].iloc[0]}): base ").num(f"base_loss[{texts}]", g["base_loss"].iloc[0])
            best = g.dropna(subset=["best_input_loss"])
            if not best.empty:
                top = best.loc[best["best_input_loss"].idxmin()]
                w.text(f", best input adapter {top['best_input']} ").num(f"best_input_loss[{texts}]", top["best_input_loss"])
            for i, r in enumerate(g.sort_values("loss").itertuples()):
                w.text("; " if i else "; merges: ").text(f"{r.method} ({r.merged}) ").num(f"loss[{r.merged}][{texts}]", r.loss)
            w.text(" (one merge run, no seeds: differences here are measurements, not verdicts).")
            out.append(w.sentence)
    return out


def headline(runs: Sequence[Run]) -> Chart:
    """Every merged adapter's mean error against its rank k, one marker per method, beside the Eckart–Young floor."""
    return figures.merge_chart(load.read_runs(runs, "merge"))


def section(page: Page) -> None:
    """Errors of every merged adapter against rank k, beside the Eckart–Young floor; one row per merged adapter;
    with --eval-texts, the held-out loss of each merge beside its inputs' and the base's on each text set."""
    # merged adapters are not checkpoints of the analysed runs: only the run, role and layer filters apply
    merge = page.read("merge", checkpoint=False, step=False)
    if merge.empty:
        page.message("No merged modules in these runs (or in this selection: widen the filters in the sidebar).")
        return
    page.figure(Headline(partial(figures.merge_chart, merge)))
    page.table("Merged adapters (means over modules)", digests.merge(merge), "checkpoint = the merged adapter's folder name")
    page.table("merge rows", merge, reference=True)

    page.heading("Held-out loss per text set (merge_eval)")
    # whole models: no filter of the sidebar applies
    evals = page.read("merge_eval", checkpoint=False, step=False, role=False, layer=False)
    if evals.empty:
        if page.interactive:  # the report says nothing of an evaluation that was not asked for
            page.message("No merge evaluations in this selection: run `lab merge ... --base BASE --eval-texts "
                         "a.txt,b.txt`.")
        return
    page.figure(partial(figures.merge_eval_chart, evals))
    page.table("Held-out loss per merged adapter and text set", digests.merge_eval(evals),
               "loss of the merge, the base and the best input adapter on each --eval-texts set")
    page.table("merge_eval rows", evals, reference=True)


FAMILY = Family(
    'merge', 'Merges', ('merge', 'merge_eval'), THEORY,
    icon=':material/merge:',
    hint='Run `lab merge ADAPTER... --method M --out DIR --results RESULTS` to add merges.',
    findings=findings, headline=headline, section=section,
)
