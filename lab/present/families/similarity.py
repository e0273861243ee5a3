"""The geometry between updates family (adapter_similarity, subspace_similarity): its theory, findings, headline figure and section."""

from __future__ import annotations

import math
from functools import partial
from typing import Sequence

import numpy as np

from lab.present import load
from lab.present import similarity as pairs_of
from lab.present.family import Family
from lab.present.figures import similarity as figures
from lab.present.figures.common import Chart
from lab.present.page import Page
from lab.present.seeds import separated
from lab.present.sentences import Sentence, Writer
from lab.store import Run

THEORY = (
    'The same module across several adapters or checkpoints of one run, per pair (a, b): the cosine between the '
    'updates as vectors, ⟨ΔW_a, ΔW_b⟩_F/(‖ΔW_a‖_F‖ΔW_b‖_F), from the factors for s·B·A (two independent random m×n '
    'updates give about ±1/√(m·n)); the subspace similarity of the LoRA paper (Hu et al. 2021) as issue 25 states '
    'it, φ(i, j) = ‖U_a,iᵀ U_b,j‖_F²/min(i, j) between the top-i and top-j left (and right) singular vectors, 1 '
    'when the smaller subspace lies in the larger, about max(i, j)/m for random ones; the principal angles θ of the'
    ' top-k subspaces (cos θ: the singular values of U_aᵀU_b) and the Grassmann distance √Σθ²; and the '
    'sign-conflict rate, among entries nonzero in both, the fraction whose signs differ (the conflicts TIES-merging'
    ' resolves by electing a sign; 0.5 for independent updates). Checkpoints of one training run show how the '
    "update turns as it grows (adjacent checkpoints' cosine); adapters of different tasks show how alike their "
    'updates are before they are merged.'
)


def findings(runs: Sequence[Run]) -> list[Sentence]:
    """Per run: which members' updates point most and least alike (mean cosine over modules, with the chance scale
    1/√(m·n) of independent random updates), LoRA's φ(1, 1) of the most alike pair beside chance 1/m, its sign-conflict
    rate beside 0.5; for checkpoints with steps, the cosine between adjacent checkpoints (how the update turns)."""
    compared, member_steps, members = pairs_of.compared, pairs_of.member_steps, pairs_of.members
    out = []
    for run in runs:
        if not run.has_table("adapter_similarity"):
            continue
        rows = load.read(run, "adapter_similarity")
        if rows.empty:
            continue
        w = Writer("similarity", run.name)
        done = compared(rows)
        if done.empty:
            w.text(f"{run.name}: ").num("not_compared", len(rows), " module pairs not compared (a streamed update, or "
                                                                   "shapes that differ).")
            out.append(w.sentence)
            continue
        deltas = load.read(run, "deltas", ["checkpoint", "step", "module", "rows", "cols"])
        steps = member_steps(deltas)
        shape = deltas.drop_duplicates("module").set_index("module")
        order = members(done, steps)
        per_pair = {(a, b): g for (a, b), g in done.groupby(["first", "second"], sort=False)}
        means = {pair: float(g["cosine"].mean()) for pair, g in per_pair.items()}
        w.text(f"{run.name}: ").num("pairs", len(per_pair), " pair" + ("s" if len(per_pair) > 1 else "") + " of ")
        w.num("members", len(order), " updates (")
        w.text(", ".join(order) + ") over ").num("modules", done["module"].nunique(), " modules; ")
        top = max(means, key=lambda p: (means[p], p))
        low = min(means, key=lambda p: (means[p], p))
        chance = (1.0 / np.sqrt(shape.loc[done["module"].unique(), "rows"].astype(float)
                                * shape.loc[done["module"].unique(), "cols"].astype(float))).mean()
        w.text(f"cos(ΔW_a, ΔW_b), mean over modules, {top[0]}–{top[1]} ").num("cosine_top", means[top])
        if low != top:
            w.text(f" (most alike), {low[0]}–{low[1]} ").num("cosine_low", means[low], " (least alike; ")
            apart = separated(per_pair[top]["cosine"].dropna(), per_pair[low]["cosine"].dropna())
            w.text("separated over modules)" if apart else "not separated over modules)")
        w.text("; independent random updates of these shapes: about ±").num("cosine_chance", chance)
        w.text(", so the most alike pair is " + ("beyond" if abs(means[top]) > 2 * chance else "within")
               + " twice the chance scale")
        grid = load.read(run, "subspace_similarity", None, [("first", "==", top[0]), ("second", "==", top[1]),
                                                             ("side", "==", "left"), ("i", "==", 1), ("j", "==", 1)])
        if not grid.empty:
            grid = grid[grid["module"].isin(per_pair[top]["module"])]
            w.text(f"; {top[0]}–{top[1]}: LoRA's φ(1, 1) of the top left directions ").num("phi_11_top", grid["phi"].mean())
            w.text(" (chance 1/m: ").num("phi_11_chance", (1.0 / shape.loc[grid["module"].unique(), "rows"].astype(float)).mean(), ")")
        if per_pair[top]["sign_conflict"].notna().any():
            w.text(", sign conflicts ").num("sign_conflict_top", per_pair[top]["sign_conflict"].mean(), " of shared entries (0.5: independent)")
        stepped = [m for m in order if not math.isnan(steps.get(m, float("nan")))]
        if len(stepped) > 2:  # with two, the one pair is stated above
            w.text("; between adjacent checkpoints: ")
            for i, (a, b) in enumerate(zip(stepped, stepped[1:])):
                g = per_pair.get((a, b), per_pair.get((b, a)))
                if g is None:
                    continue
                w.text(("" if i == 0 else ", ") + f"step {int(steps[a])} → {int(steps[b])} ").num(f"cosine_step[{a}:{b}]", g["cosine"].mean())
            g = per_pair.get((stepped[0], stepped[-1]), per_pair.get((stepped[-1], stepped[0])))
            if g is not None:
                w.text("; first → last ").num("cosine_first_last", g["cosine"].mean())
        w.text(".")
        out.append(w.sentence)
    return out


def headline(runs: Sequence[Run]) -> Chart:
    """The member × member cosine over modules, one map per run that compared updates."""
    with_table = [r for r in runs if r.has_table("adapter_similarity")]
    steps = pairs_of.member_steps(load.read_runs(with_table, "deltas", ["checkpoint", "step"]))
    return figures.pairs_chart(load.read_runs(with_table, "adapter_similarity"), steps)


PAIRS_CAPTION = (
    "cosine between the updates as vectors (independent random updates: about ±1/√(m·n)); Grassmann distance √Σθ² "
    "and smallest principal angle of the top-k subspaces (radians); sign_conflict: fraction of shared nonzero "
    "entries with opposite signs (0.5: independent)")


def section(page: Page) -> None:
    """Member × member maps over modules (the chosen measure, default the cosine, and the Grassmann distance), one
    row per compared pair; per run the chosen measure per layer and φ(i, j) of a chosen pair (default: its most
    alike); the compared rows."""
    # a row joins two members ('a+b' in the checkpoint column): the checkpoint and step filters apply to its members
    pairs = pairs_of.compared(page.read("adapter_similarity", checkpoint=False, step=False))
    deltas = page.read("deltas", ["checkpoint", "step"], checkpoint=False, step=False, role=False, layer=False)
    left_out = set(deltas["checkpoint"].astype(str)) - set(page.index()["checkpoint"].astype(str))
    if left_out and not pairs.empty:
        pairs = pairs[~pairs["first"].astype(str).isin(left_out) & ~pairs["second"].astype(str).isin(left_out)]
    if pairs.empty:
        page.message("No compared pairs in this selection: widen the filters in the sidebar (a pair needs both of "
                     "its members chosen)." if page.interactive else
                     "no compared pairs in these runs (a streamed update, or shapes that differ)")
        return
    steps = pairs_of.member_steps(deltas)

    measure = page.choose("Measure", list(figures.MEASURES), "cosine", help=", ".join(
        f"{m}: {label}" for m, (label, _) in figures.MEASURES.items()))
    page.heading("Member × member, mean over modules")
    page.figure(partial(figures.pairs_chart, pairs, steps, measure=measure))
    if measure != "grassmann_left":
        page.figure(partial(figures.pairs_chart, pairs, steps, measure="grassmann_left",
                            title="Grassmann distance of the top-k left subspaces (mean over modules)"))
    table = pairs_of.digest(pairs)
    page.table("Pairs (means over modules)", table, PAIRS_CAPTION)

    for run in page.runs:
        mine = pairs[pairs["run"] == run.name]
        if mine.empty:
            continue
        page.heading(f"Per layer ({run.name})")
        page.figure(partial(figures.layers_chart, mine, steps, measure=measure,
                            title=f"Member × member {measure} per layer ({run.name})"), detail=True)
        page.heading(f"LoRA's φ(i, j) ({run.name})")
        ours = table[table["run"] == run.name]
        top = ours.sort_values("cosine").iloc[-1]
        options = [f"{a} – {b}" for a, b in zip(ours["first"], ours["second"])]
        most_alike = f"{top['first']} – {top['second']}"
        pick = page.choose(f"Pair ({run.name})", options, most_alike)
        first, second = pick.split(" – ", 1)
        grid = page.read("subspace_similarity", None, [("first", "==", first), ("second", "==", second)],
                         runs=[run], checkpoint=False, step=False)
        title = (f"φ(i, j) of the most alike pair, {first} – {second} ({run.name})" if pick == most_alike
                 else f"φ(i, j): {first} – {second} ({run.name})")
        page.figure(partial(figures.phi_chart, grid, title=title), detail=True)
    page.table("adapter_similarity rows", pairs, reference=True)


FAMILY = Family(
    'similarity', 'Geometry between updates', ('adapter_similarity', 'subspace_similarity'), THEORY,
    icon=':material/grid_on:',
    hint='Run `lab analyze A B ... --probes adapter_similarity` on two or more adapters or a training output with checkpoint-N/ folders to add it.',
    findings=findings, headline=headline, section=section, cost=3,
)
