"""The no-hair: lora beside full fine-tuning family (no_hair): its theory, findings, headline figure and section."""

from __future__ import annotations

from functools import partial
from typing import Sequence

import pandas as pd

from lab.present import load, no_hair
from lab.present.family import Family
from lab.present.figures import no_hair as figures
from lab.present.figures.common import Chart
from lab.present.page import Page
from lab.present.sentences import Sentence, Writer, fmt, per_run
from lab.store import Run

THEORY = (
    "arXiv 2601.06788 finds that LoRA and full fine-tuning leave distinct internal signatures, yet 'such "
    "differences do not manifest in the attention outputs'. Posed on two fine-tunes a and b of one base, per layer "
    'and window length: inside, the mean over cuts of |S_a(ΔW) − S_b(ΔW)| / S_Page for the query and the value '
    'projection (the internal entanglement profiles of the two updates); outside, on the same token windows, the '
    'token-cut and digit-chain attention profiles (|S_a(P) − S_b(P)| / S_base(P)), the attention rows (½‖P_a − '
    "P_b‖₁), the heads' outputs O = P·V and the layer's output after W_O (‖O_a − O_b‖_F / ‖O_base‖_F), each beside "
    "a's and b's own distance from the base, with bootstrap 95 % intervals over windows. The no-hair ratio is "
    'outside / inside. Pairs are matched on update size (√(‖ΔW_q‖² + ‖ΔW_v‖²)/√(‖W_q‖² + ‖W_v‖²) within a factor '
    "1.5); a verdict ('closer' to each other than to the base, or 'farther') is stated only where the intervals "
    "separate, otherwise 'not separable'."
)



def findings(runs: Sequence[Run]) -> list[Sentence]:
    """Per run, each pair (matched pairs first): the inside distance, the layer-output and row distances
    beside the members' distances from the base, and the verdicts where intervals separate."""
    out = []
    for run, rows in per_run(runs, "no_hair"):
        rows = no_hair.with_verdicts(rows)
        pairs = no_hair.pairs(rows).sort_values(["matched", "size_ratio"], ascending=[False, True])
        w = Writer("no_hair", run)
        w.text(f"{run}: ")
        for i, p in enumerate(pairs.itertuples()):
            tag = f"matched on update size, {fmt(p.size_ratio)}×" if p.matched else f"unmatched, sizes {fmt(p.size_ratio)}× apart"
            w.text(("" if i == 0 else " ") + f"{p.pair} ({p.kinds}, {tag}): inside ").num(f"inside[{p.pair}]", p.inside)
            for measure, label in (("layer_output", "layer output"), ("rows", "attention rows")):
                r = rows[(rows["pair"] == p.pair) & (rows["measure"] == measure)]
                if r.empty:
                    continue
                w.text(f"; {label} a–b ").num(f"{measure}[{p.pair}]", r["distance"].mean(), " (a–base ")
                w.num(f"{measure}_first_base[{p.pair}]", r["first_base"].mean(), ", b–base ")
                w.num(f"{measure}_second_base[{p.pair}]", r["second_base"].mean(), "), ")
                w.text(no_hair.pair_verdict(r))
            w.text(".")
        out.append(w.sentence)
    return out


def headline(runs: Sequence[Run]) -> Chart:
    """Each pair's layer-output distance beside its members' distances from the base."""
    return figures.distances_chart(load.read_runs(runs, "no_hair"), "layer_output",
                                   title="No-hair: each pair's layer-output distance beside its distances from the base")


PAIR_COLUMNS = ["run", "pair", "kinds", "update_first", "update_second", "size_ratio", "matched", "inside"]
DISTANCE_MEASURES = ("layer_output", "rows", "token_cuts")  # the distance figures shown unless the reader chooses


def section(page: Page) -> None:
    """The pairs (matched on update size or not); the outside distances with their intervals beside the members'
    distances from the base; inside against outside; each chosen pair's verdict in words and the verdict counts per
    pair and measure; the rows."""
    # a row joins two checkpoints ('a:b'): the checkpoint, step and role filters do not apply to it
    rows = page.read("no_hair", checkpoint=False, role=False, step=False)
    if rows.empty:
        page.message("No no-hair rows in these runs (or in this selection: widen the filters in the sidebar).")
        return
    rows = no_hair.with_verdicts(rows)
    pairs = no_hair.pairs(rows)
    page.heading("Pairs, matched on update size")
    page.table("Pairs", pairs[PAIR_COLUMNS],
               f"matched: mean update sizes within {no_hair.MATCH:g}× (update size u = √(‖ΔW_q‖² + ‖ΔW_v‖²)/√(‖W_q‖² + "
               "‖W_v‖²)); inside: mean over layers of the mean over cuts of |S_a(ΔW) − S_b(ΔW)| / S_Page")

    options = list(dict.fromkeys(pairs["pair"]))
    chosen = page.choose_many("Pairs", options, options, help="Which pairs to show (the table above says which are "
                                                              "matched).")
    measure = page.choose("Outside measure", list(no_hair.MEASURES), "layer_output",
                          help="The measure of the inside-against-outside figure and of the verdicts in words.")
    shown_measures = page.choose_many("Distance figures", list(no_hair.MEASURES), DISTANCE_MEASURES)
    lengths = sorted(int(L) for L in rows["seq_len"].unique())
    L = page.choose("Window length L", lengths, lengths[-1], help="The window length of the distance figures.")
    shown = rows[rows["pair"].isin(chosen)]
    if shown.empty:
        page.message("Choose at least one pair.")
        return
    for m in shown_measures:  # at the longest L unless chosen: each measure's own longest, as the figure picks it
        page.figure(partial(figures.distances_chart, shown, m, None if L == lengths[-1] else L), detail=True)
    page.figure(partial(figures.inside_outside_chart, shown, measure))

    page.heading("Verdicts")
    on_measure = shown[shown["measure"] == measure]
    words = pd.DataFrame([{"run": p.run, "pair": p.pair, "matched": bool(p.matched), "measure": measure,
                           "verdict": no_hair.pair_verdict(on_measure[(on_measure["run"] == p.run)
                                                                      & (on_measure["pair"] == p.pair)])}
                          for p in pairs[pairs["pair"].isin(chosen)].itertuples()])
    page.table(f"Verdict per pair ({measure})", words,
               "over the pair's (layer, L) rows: closer when the a–b interval lies below both members' intervals from "
               "the base, farther when above both, otherwise not separated")
    page.table("Outside distances and verdicts per pair and measure", no_hair.summary(shown),
               "means over layers and lengths; closer / farther / not separated: counts of (layer, L) rows by whether "
               "the a–b interval lies below, above or across both members' intervals from the base")
    page.table("no_hair rows", shown, reference=True)


FAMILY = Family(
    'no_hair', 'No-hair: LoRA beside full fine-tuning', ('no_hair',), THEORY,
    icon=':material/compare_arrows:',
    hint='Run `lab analyze A B ... --base BASE --probes no_hair` (two or more fine-tunes of one base, with a tokenizer) to add it; `--set no_hair.pairs=a:b` limits it to chosen pairs.',
    findings=findings, headline=headline, section=section,
)
