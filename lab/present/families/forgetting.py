"""The forgetting: what fine-tuning cost the model family (forgetting, forgetting_layers, windows): its theory, findings, headline figure and section."""

from __future__ import annotations

from functools import partial
from typing import Sequence

import pandas as pd

from lab.present import forgetting, load
from lab.present.family import Family
from lab.present.figures import forgetting as figures
from lab.present.figures.common import Chart
from lab.present.page import Headline, Page
from lab.present.picks import at_last, measured
from lab.present.sentences import FULL, Sentence, Writer, against_full, per_run, who
from lab.store import Run

THEORY = (
    "The base and each checkpoint run on the same token windows of two text sets: the run's --texts (normally the "
    'fine-tuning data) and --reference-texts (text it was not tuned on, where a change is what was forgotten). Per '
    'window, KL(p_base ‖ p_tuned) = Σ_v p_base(v)·ln(p_base(v)/p_tuned(v)) in nats of the next-token distributions '
    '(decoders, positions 0 … L−2) or of the masked-token ones (encoders with a masked-LM head, a seeded fraction '
    'of positions masked, the same for every model); the cross-entropy of the base and of the tuned model at the '
    'same positions (loss change = tuned − base); and per hidden state the cosine distance 1 − cos(h_base, '
    'h_tuned). Means over windows with bootstrap 95 % intervals; which text set moved more is stated only where the'
    " intervals separate. Biderman et al., 'LoRA Learns Less and Forgets Less' (TMLR 2024), find that 'LoRA better "
    "maintains the base model's performance on tasks outside the target domain' and note that 'it is trivial that "
    "models that change less when finetuned to a new target domain, will forget less of the source domain': the "
    "findings therefore put each run's KL on the reference texts beside the size of its update (‖ΔW‖_F) and its "
    "intruder count, rather than beside the method's name."
)



def _forgetting_at(rows: pd.DataFrame) -> tuple[str | None, pd.DataFrame]:
    """(last checkpoint, its rows at the run's longest window length), one row per text set."""
    ck, rows = at_last(rows)
    if rows.empty:
        return ck, rows
    return ck, rows[rows["seq_len"] == rows["seq_len"].max()]


def _interval(w: Writer, name: str, r, column: str) -> None:
    w.num(name, r[column], " [").num(f"{name}_lo", r[f"{column}_lo"], ", ").num(f"{name}_hi", r[f"{column}_hi"], "]")


def _apart(a, b, column: str) -> int:
    """+1 when a's interval lies above b's, −1 below, 0 when they overlap."""
    if a[f"{column}_lo"] > b[f"{column}_hi"]:
        return 1
    if a[f"{column}_hi"] < b[f"{column}_lo"]:
        return -1
    return 0


def findings(runs: Sequence[Run]) -> list[Sentence]:
    """Per run at its last checkpoint and longest L: KL and loss change on --texts and on the reference texts with
    their intervals (which is larger only where the intervals separate), and where the hidden states moved most;
    with several runs, the reference-text KL beside the update's size and the intruder count."""
    layers_of = dict(per_run(runs, "forgetting_layers"))
    out, side = [], {}
    for run_obj in runs:
        if not run_obj.has_table("forgetting"):
            continue
        run = run_obj.name
        ck, rows = _forgetting_at(load.read(run_obj, "forgetting"))
        if rows.empty:
            continue
        by_set = {r["text_set"]: r for _, r in rows.iterrows()}
        w = Writer("forgetting", run)
        who(w, run, ck, rows)
        w.text("L = ").num("seq_len", rows["seq_len"].iloc[0], ", ").num("windows", rows["windows"].iloc[0], " windows; ")
        if (rows["objective"] == "none").all():
            w.text("no language-modelling head, so no KL or loss (hidden states only)")
        else:
            for i, (text_set, label) in enumerate((("texts", "on --texts"), ("reference", "on the reference texts"))):
                r = by_set.get(text_set)
                if r is None:
                    continue
                w.text(("" if i == 0 else "; ") + f"{label} KL(p_base ‖ p_tuned) ")
                _interval(w, f"kl_{text_set}", r, "kl")
                w.text(" nats, loss change ")
                _interval(w, f"loss_change_{text_set}", r, "loss_change")
            if {"texts", "reference"} <= set(by_set):
                sign = _apart(by_set["reference"], by_set["texts"], "kl")
                w.text({1: "; KL larger on the reference texts (intervals separate)",
                        -1: "; KL larger on --texts (intervals separate)",
                        0: "; KL on the two text sets not separated (intervals overlap)"}[sign])
            else:
                w.text(" (no reference texts: run with --reference-texts to see what was forgotten)")
        layers = layers_of.get(run)
        if layers is not None:
            mine = layers[(layers["checkpoint"].astype(str) == ck) & (layers["seq_len"] == rows["seq_len"].iloc[0])]
            text_set = "reference" if (mine["text_set"] == "reference").any() else "texts"
            mine = mine[(mine["text_set"] == text_set) & mine["cosine_distance"].notna()]
            if not mine.empty:
                top = mine.sort_values(["cosine_distance", "hidden_state"], ascending=[False, True]).iloc[0]
                w.text(f"; hidden states ({'reference texts' if text_set == 'reference' else '--texts'}) moved most at hidden state ")
                w.num("hidden_state_max", top["hidden_state"], ", 1 − cos = ").num("cosine_distance_max", top["cosine_distance"])
        w.text(".")
        out.append(w.sentence)
        kl_row = by_set.get("reference", by_set.get("texts"))
        if kl_row is not None and pd.notna(kl_row["kl"]):
            side[run] = (run_obj, ck, kl_row)
    if len(side) > 1:
        out.append(_learns_less_forgets_less(side, load.run_methods(runs)))
    return out


def _learns_less_forgets_less(side: dict, methods: dict[str, str]) -> Sentence:
    """The runs ordered by update size (mean ‖ΔW‖_F at the checkpoint of their forgetting rows) beside their KL on
    the reference texts (else --texts) and their intruder count; an order stated only where the KL intervals of
    neighbours in size separate; with a full fine-tune among them, each method's runs against full fine-tuning's by
    the seeds rule (:func:`lab.present.sentences.against_full`)."""
    from lab.present import intruders as intr  # it reads the spectra probe's defaults: loaded only when needed

    w = Writer("forgetting", None)
    sizes, counts = {}, {}
    for run, (run_obj, ck, _) in side.items():
        d = load.read(run_obj, "deltas", ["checkpoint", "source", "fro_norm"], [("checkpoint", "==", ck)])
        sizes[run] = float(measured(d)["fro_norm"].mean()) if not d.empty else float("nan")
        if run_obj.has_table("intruders"):
            rows = load.read(run_obj, "intruders", None, [("checkpoint", "==", ck)])
            if not rows.empty:
                eps, k = intr.setting(rows)
                counts[run] = (float(intr.at(rows, eps, k)["intruder_count"].sum()), eps, k)
    order = sorted(side, key=lambda r: (sizes[r], r))
    sets = {side[r][2]["text_set"] for r in order}
    w.text("Update size beside forgetting (last checkpoints, KL on the " + ("reference texts" if sets == {"reference"}
                                                                           else "/".join(sorted(sets)) + " texts") + "): ")
    for i, run in enumerate(order):
        w.text(("" if i == 0 else "; ") + f"{run}: mean ‖ΔW‖_F ").num(f"fro_norm[{run}]", sizes[run], ", KL ")
        r = side[run][2]
        w.num(f"kl[{run}]", r["kl"], " [").num(f"kl_lo[{run}]", r["kl_lo"], ", ").num(f"kl_hi[{run}]", r["kl_hi"], "]")
        if run in counts:
            n, eps, k = counts[run]
            w.text(", ").num(f"intruders[{run}]", n, f" intruders (ε = {eps:g}, k = {k}, left)")
    signs = [_apart(side[b][2], side[a][2], "kl") for a, b in zip(order, order[1:])]
    if sets != {"reference"} and len(sets) > 1:
        w.text(". The KL is on different text sets across runs: no order stated.")
    elif all(s == 1 for s in signs):
        w.text(". The larger the update, the larger the KL (each neighbour's interval separates): learns more, forgets more.")
    elif all(s == -1 for s in signs):
        w.text(". The larger the update, the smaller the KL (each neighbour's interval separates).")
    else:
        w.text(". KL against update size: not separated (neighbouring intervals overlap or the order is mixed).")
    w.text(" Mean ‖ΔW‖_F is over each run's own modules, so runs that analysed different modules compare only roughly.")
    kinds = {methods.get(run) or "unknown" for run in order}
    if sets == {"reference"} and FULL in kinds and len(kinds) > 1:
        w.text(" KL on the reference texts by method, the runs of a method as its seeds:")
        against_full(w, {run: float(side[run][2]["kl"]) for run in order}, methods)
    return w.sentence


def headline(runs: Sequence[Run]) -> Chart:
    """KL and loss change per run, checkpoint and text set (each run at its longest L)."""
    return figures.kl_chart(load.read_runs(runs, "forgetting"))


EVERY_LENGTH = "every length"  # the report's choice: the figures at each run's longest L, the table at every L


def section(page: Page) -> None:
    """KL and loss change per run, checkpoint and text set with intervals; hidden-state distances by layer (each run
    at its longest L, or at the chosen L); one row per run, checkpoint, text set and L; the rows."""
    # whole models: the module, layer and role filters do not apply
    rows = page.read("forgetting", role=False, layer=False)
    if rows.empty:
        page.message("No forgetting rows in these runs (or in this selection: widen the filters in the sidebar).")
        return
    layers = page.read("forgetting_layers", role=False, layer=False)
    lengths = sorted(int(L) for L in rows["seq_len"].unique())
    # a reader starts at the longest L; the report shows every length (its figures take each run's longest)
    L = page.choose("Window length L", lengths + [EVERY_LENGTH], lengths[-1] if page.interactive else EVERY_LENGTH)
    if L != EVERY_LENGTH:
        rows, layers = rows[rows["seq_len"] == L], layers[layers["seq_len"] == L] if not layers.empty else layers
    notes = sorted(set(rows["note"].dropna()) - {""}) if "note" in rows.columns else []
    if not (rows["text_set"] == "reference").any():
        notes.append("No reference texts in these runs: add `--reference-texts OTHER.txt` to see what was forgotten.")
    if notes:
        page.message(" ".join(notes))

    kl = partial(figures.kl_chart, rows)
    page.figure(Headline(kl) if L == EVERY_LENGTH else kl)
    page.figure(partial(figures.layers_chart, layers))
    page.table("KL and loss change per run, checkpoint, text set and L", forgetting.digest(rows, layers),
               "texts: the run's --texts; reference: --reference-texts (what was forgotten); _lo/_hi: bootstrap 95 % "
               "intervals over windows; most_moved_state: the hidden state (0 = embeddings) farthest from the base's")
    page.table("forgetting rows", rows, reference=True)
    page.table("forgetting_layers rows", layers, reference=True)


FAMILY = Family(
    'forgetting', 'Forgetting: what fine-tuning cost the model', ('forgetting', 'forgetting_layers', 'windows'), THEORY,
    icon=':material/history:',
    hint='Run `lab analyze CKPT --base BASE --probes forgetting --texts TUNING.txt --reference-texts OTHER.txt` to add it.',
    findings=findings, headline=headline, section=section,
)
