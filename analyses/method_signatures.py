"""Each PEFT method's entanglement signature at a matched parameter budget: the comparison nobody has published.

The papers the lab is built on (Artificial Entanglement, arXiv 2601.06788; LoRA's minimal semantic
units) describe LoRA's update as an MPS state with a deep "valley" at the row|column cut: its
entropy there is at most ln r. Every other adapter has its own structure and so its own ceiling:
LoHa's Hadamard product of two rank-r factors has rank ≤ r², LoKr's Kronecker product has
rank(W1)·rank(W2) and, as a state, is the tensor product of its two factors' states, VeRA's shared
random projections give rank ≤ r, IA3's diagonal scaling of W is full rank, BOFT's orthogonal
rotation of W is full rank too, AdaLoRA prunes its ranks as it trains.

This script fine-tunes all-MiniLM-L6-v2's query and value projections with each method at the same
trainable-parameter budget (``lab finetune --budget``) on Python's standard-library docstrings, the
same steps, seed and data order, analyses each with lab's entanglement and spectra probes (base
given, so multiplicative methods are measured as ΔW = W_merged − W), and writes
``method_signatures.png`` and ``method_signatures.md``: per method its internal entanglement profile,
the valley entropy against its structural bound ln(rank bound), the valley depth below Page's
value, the stable and effective ranks of ΔW, and the training loss at equal steps. Fine-tunes and
analyses are cached under the work folder like ``lab demo``'s (reused when their options are
unchanged).

    python analyses/method_signatures.py [--workdir DIR] [--out DIR] [--budget P] [--steps N] [--methods a,b,...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent
METHODS = ("lora", "dora", "adalora", "loha", "lokr", "vera", "ia3", "boft")
MODULES = r"attention\.self\.(query|value)"
TOL = 1e-9


def default_workdir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("lab")) / "method_signatures"


def configs(workdir: Path, methods, budget: int, steps: int, seed: int) -> dict:
    from lab.finetune.config import FinetuneConfig

    return {m: FinetuneConfig(out=str(workdir / "finetunes" / m), model="minilm", method=m, budget=budget, steps=steps,
                              save_every=steps, seed=seed, batch_size=16, max_length=64)
            for m in methods}


def finetune_all(configs: dict) -> dict[str, float]:
    """Train what is not cached; returns method -> training seconds (NaN when reused)."""
    from lab.finetune.train import finetune, is_complete

    seconds = {}
    for method, config in configs.items():
        if is_complete(config.out, config):
            seconds[method] = math.nan
            continue
        print(f"fine-tuning {method} ({config.steps} steps, budget {config.budget} parameters)", file=sys.stderr)
        start = time.perf_counter()
        finetune(config, overwrite=True)
        seconds[method] = time.perf_counter() - start
    return seconds


def analyze_all(workdir: Path, configs: dict, retrained: set[str]) -> dict:
    """lab.analyze of each fine-tune's checkpoint against MiniLM (entanglement and spectra), cached."""
    import lab
    from lab.demo import one_blas_thread
    from lab.errors import LabError
    from lab.finetune.models import minilm_path
    from lab.store import open_run

    base = minilm_path()
    runs = {}
    for method, config in configs.items():
        folder = workdir / "results" / method
        try:
            run = open_run(folder)
            current = run.complete and method not in retrained and run.manifest.get("options", {}).get("modules") == MODULES
        except LabError:
            current = False
        if not current:
            print(f"analysing {method}", file=sys.stderr)
            with one_blas_thread():
                run = lab.analyze(config.out, base=base, out=workdir / "results", run=method,
                                  probes=["entanglement", "spectra"], modules=MODULES, overwrite=True, progress=False)
        runs[method] = run
    return runs


def _last(t: pd.DataFrame) -> pd.DataFrame:
    return t[t.step == t.step.max()] if "step" in t and t.step.notna().any() else t


def measure(workdir: Path, runs: dict, configs: dict) -> dict:
    """The numbers of the summary, per method, from the stored tables and each fine-tune's loss log."""
    rows, profiles = [], []
    for method, run in runs.items():
        deltas = _last(run.table("deltas"))
        deltas = deltas[deltas.checkpoint != "controls"]
        summary = _last(run.table("entanglement_summary"))
        summary = summary[summary.source == "delta"]
        spectra = _last(run.table("spectra"))
        spectra = spectra[spectra.source == "delta"]
        profile = _last(run.table("entanglement"))
        profile = profile[profile.source == "delta"]
        bound = np.log(summary.rank_bound.astype(float))
        losses = [json.loads(line)["loss"] for line in (Path(configs[method].out) / "loss.jsonl").read_text().splitlines()]
        recorded = json.loads((Path(configs[method].out) / "finetune_config.json").read_text())
        rows.append({
            "method": method,
            "kind": "+".join(sorted(set(deltas.kind))),
            "params": int(deltas.params.sum()),
            "size": _size(recorded),
            "rank_bound": int(summary.rank_bound.median()),
            "valley_entropy": float(summary.valley_entropy.mean()),
            "ln_rank_bound": float(bound.mean()),
            "bound_held": int((summary.valley_entropy <= bound + TOL).sum()),
            "modules": int(len(summary)),
            "valley_page": float(summary.valley_page_entropy.mean()),
            "valley_depth": float(summary.valley_depth.mean()),
            "page_ratio_mean": float(summary.page_ratio_mean.mean()),
            "stable_rank": float(spectra.stable_rank.mean()),
            "effective_rank": float(spectra.effective_rank.mean()),
            "fro_norm": float(deltas.fro_norm.mean()),
            "first_loss": float(np.mean(losses[:5])),
            "final_loss": float(np.mean(losses[-5:])),
            "losses": losses,
        })
        p = profile.groupby("cut").agg(entropy=("entropy", "mean"), page=("page_entropy", "mean"),
                                       max_entropy=("max_entropy", "mean"), row_sites=("row_sites", "first")).reset_index()
        p["method"] = method
        profiles.append(p)
    return {"table": pd.DataFrame(rows), "profiles": pd.concat(profiles, ignore_index=True)}


def _size(recorded: dict) -> str:
    """What --budget chose for the method, as finetune_config.json records it ("r = 6", "fixed")."""
    pick = recorded.get("budget") or {}
    if pick.get("option"):
        return f"{pick['option']} = {pick['size']}"
    return "fixed" if pick else ""


def figure(found: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lab.present import colours

    table, profiles = found["table"], found["profiles"]
    methods = list(table.method)
    palette = colours.use(methods)
    fig, axes = plt.subplots(2, 2, figsize=(12, 9), layout="constrained")
    ax = axes[0, 0]
    first = profiles[profiles.method == methods[0]]
    ax.plot(first.cut, first.page, color="0.45", ls="--", lw=1.2, label="Page: random state")
    ax.plot(first.cut, first.max_entropy, color="0.7", ls=":", lw=1.2, label="maximum ln min(D_left, D_right)")
    for method in methods:
        p = profiles[profiles.method == method]
        ax.plot(p.cut, p.entropy, marker="o", ms=3, color=palette[method], label=method)
    ax.axvline(int(first.row_sites.iloc[0]), color="0.8", lw=0.8)
    ax.set(xlabel="cut k (row sites | column sites at the grey line)", ylabel="entropy S(k), nats (mean over modules)",
           title="Entanglement profile of ΔW, last checkpoint")
    ax.legend(fontsize=7, ncols=2)

    ax = axes[0, 1]
    for _, row in table.iterrows():
        ax.scatter(row.ln_rank_bound, row.valley_entropy, s=40, color=palette[row.method], zorder=3)
        ax.annotate(row.method, (row.ln_rank_bound, row.valley_entropy), fontsize=8, xytext=(4, 2), textcoords="offset points")
    lim = max(table.ln_rank_bound.max(), table.valley_entropy.max()) * 1.08
    ax.plot([0, lim], [0, lim], color="tab:red", lw=1, label="S = ln(rank bound): the structural ceiling")
    ax.scatter(table.ln_rank_bound, table.valley_page, marker="_", s=120, color="0.45", label="Page's value at the valley cut")
    ax.set(xlabel="ln(structural rank bound)", ylabel="valley entropy, nats (mean over modules)",
           title="Valley entropy against each method's structural bound")
    ax.legend(fontsize=7)

    ax = axes[1, 0]
    x = np.arange(len(methods))
    ax.bar(x - 0.2, table.stable_rank, 0.4, color=[palette[m] for m in methods], label="stable rank ‖ΔW‖²_F/σ₁²")
    ax.bar(x + 0.2, table.effective_rank, 0.4, color=[palette[m] for m in methods], alpha=0.45,
           label="effective rank exp(H(σ/Σσ))")
    ax.set_yscale("log")
    ax.set_xticks(x, methods, rotation=30)
    ax.set(ylabel="rank (log scale)", title="Spectra of ΔW: stable (solid) and effective (faint) rank")
    ax.legend(fontsize=7)

    ax = axes[1, 1]
    window = 5
    for _, row in table.iterrows():
        w = min(window, len(row.losses))
        smooth = np.convolve(row.losses, np.ones(w) / w, mode="valid")
        ax.plot(np.arange(w, len(row.losses) + 1), smooth, color=palette[row.method], lw=1.4, label=row.method)
    ax.set(xlabel="step", ylabel=f"training loss (InfoNCE), mean of the last {window} steps",
           title="Training loss at equal steps and budget (same batches for every method)")
    ax.legend(fontsize=7, ncols=2)
    fig.suptitle("PEFT methods on MiniLM's query and value projections at a matched parameter budget", fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(found: dict, budget: int, steps: int, seconds: dict) -> str:
    t = found["table"]
    f = lambda v, d=3: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}g}"
    lines = [
        "# Method signatures: each PEFT method's entanglement at a matched parameter budget",
        "",
        f"all-MiniLM-L6-v2, query and value projections of its 6 layers (12 modules of 384×384), trained {steps} steps "
        f"on Python's standard-library docstrings (contrastive InfoNCE, same seed and batches), each method sized by "
        f"`lab finetune --budget {budget}`; ΔW measured by `lab analyze` against the base (last checkpoint). "
        "Produced by `analyses/method_signatures.py`; every number is measured here, none is copied from a paper.",
        "",
        "![method signatures](method_signatures.png)",
        "",
        "| method | size | trainable params | rank bound | valley S (nats) | ln bound | S ≤ ln bound | Page at valley | valley depth | "
        "stable rank | effective rank | loss, steps 1–5 | loss, last 5 steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in t.iterrows():
        lines.append(f"| {r.method} | {r['size']} | {r.params:,} | {r.rank_bound} | {f(r.valley_entropy)} | {f(r.ln_rank_bound)} | "
                     f"{r.bound_held}/{r.modules} | {f(r.valley_page)} | {f(r.valley_depth)} | {f(r.stable_rank)} | "
                     f"{f(r.effective_rank)} | {f(r.first_loss, 4)} | {f(r.final_loss, 4)} |")
    lines += ["", "## What the numbers say", ""]
    budget_spread = t.params.max() / max(t.params.min(), 1)
    lines.append(f"- **Budgets.** The trainable-parameter counts range from {t.params.min():,} to {t.params.max():,} "
                 f"({budget_spread:.2g}×): " + ("matched within 2×." if budget_spread <= 2 else
                 "not all methods can reach the budget (IA3 has a fixed count; the others take the largest size that fits)."))
    held = t[t.bound_held == t.modules]
    lines.append(f"- **Structural ceilings.** The valley entropy stays at or below ln(rank bound) for "
                 f"{len(held)} of {len(t)} methods in every module" +
                 ("." if len(held) == len(t) else f"; not for {', '.join(t[t.bound_held < t.modules].method)} (a reader's rank bound is wrong there)."))
    shape_bound = 384
    low = t[t.rank_bound < shape_bound]
    full = t[t.rank_bound >= shape_bound]
    if len(low) and len(full):
        lines.append(f"- **Valleys.** Methods with a low-rank structure ({', '.join(low.method)}) sit {f(low.valley_depth.mean())} "
                     f"nats below Page's value at the row|column cut on average; those whose bound is the full "
                     f"{shape_bound} ({', '.join(full.method)}) {f(full.valley_depth.mean())} nats.")
        deep = full[full.valley_depth >= low.valley_depth.min()]
        if len(deep):
            why = (" DoRA's update is a LoRA update plus W's columns rescaled by the magnitude vector: full rank in "
                   "principle, and as measured nearly as concentrated as LoRA's." if "dora" in set(deep.method) else "")
            lines.append(f"  Full-bound but as deep as a low-rank method: {', '.join(f'{r.method} ({f(r.valley_depth)})' for _, r in deep.iterrows())}."
                         + why)
        shallow = full[full.valley_depth < low.valley_depth.min()]
        if len(shallow):
            lines.append(f"  The others ({', '.join(shallow.method)}) are within {f(shallow.valley_depth.max())} nats of Page's "
                         "value: at the row|column cut their updates look like random matrices of that shape.")
    order = t.sort_values("valley_entropy")
    lines.append("- **Lowest to highest valley entropy:** " + ", ".join(f"{r.method} {f(r.valley_entropy)}" for _, r in order.iterrows()) + ".")
    rank_gap = t.assign(gap=t.ln_rank_bound - t.valley_entropy).sort_values("gap", ascending=False)
    lines.append("- **Room left under the ceiling** (ln bound − valley S): " +
                 ", ".join(f"{r.method} {f(r.gap)}" for _, r in rank_gap.iterrows()) +
                 ". A method whose update uses few of the ranks its structure allows sits far below its ceiling.")
    best = t.sort_values("final_loss").iloc[0]
    rose = t[t.final_loss > t.first_loss]
    lines.append(f"- **Loss at equal steps.** Lowest mean loss over the last 5 steps: {best.method} ({f(best.final_loss, 4)}); "
                 f"highest: {t.sort_values('final_loss').iloc[-1].method} ({f(t.final_loss.max(), 4)}). Every method sees the "
                 "same batches, whose difficulty moves the loss far more than the method does (the curves rise and fall "
                 "together)" + (f"; for {len(rose)} of {len(t)} methods the last 5 steps' mean is above the first 5 steps', "
                 "so at this length the training loss does not separate the methods" if len(rose) else "") +
                 f". {steps} steps from a model already trained on this objective is short: this is early progress, not converged quality.")
    timed = {m: s for m, s in seconds.items() if not math.isnan(s)}
    if timed:
        lines.append("- **Training time here** (2 shared cores): " + ", ".join(f"{m} {s:.0f} s" for m, s in timed.items()) + ".")
    lines += ["", "Rank bounds are the readers' structural ones (the `deltas` table's `rank_bound`): r for LoRA, AdaLoRA's kept "
              "ranks, VeRA's r (or min(rows, cols) when r exceeds it, as the budget's r = 5760 does here), r1·r2 for LoHa, "
              "rank(W1)·rank(W2) for LoKr, min(rows, cols) for DoRA with its base (the magnitude rescales W's columns), IA3 "
              "and BOFT. IA3 has a fixed parameter count (one scaling vector per module), far below the budget."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="where fine-tunes and results are cached")
    parser.add_argument("--out", type=Path, default=ROOT / "output", help="folder for method_signatures.png and .md")
    parser.add_argument("--budget", type=int, default=73_728, help="trainable parameters per method (default: LoRA r = 8 on q, v)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args(argv)
    workdir = args.workdir or default_workdir()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    chosen = configs(workdir, methods, args.budget, args.steps, args.seed)
    seconds = finetune_all(chosen)
    runs = analyze_all(workdir, chosen, {m for m, s in seconds.items() if not math.isnan(s)})
    found = measure(workdir, runs, chosen)
    args.out.mkdir(parents=True, exist_ok=True)
    figure(found, args.out / "method_signatures.png")
    (args.out / "method_signatures.md").write_text(markdown(found, args.budget, args.steps, seconds))
    print(found["table"].drop(columns=["losses"]).to_string(index=False))
    print(f"wrote {args.out / 'method_signatures.md'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
