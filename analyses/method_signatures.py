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
same steps and data order, for each of ``--seeds N`` seeds (default 3; the seed sets the initialisation
and the batch order), analyses each with lab's entanglement and spectra probes and random controls
(base given, so multiplicative methods are measured as ΔW = W_merged − W), and writes
``method_signatures.png`` and ``method_signatures.md``: per method its internal entanglement profile,
the valley entropy against its structural bound ln(rank bound) (a sanity check, one line), the
valley's depth below Page's value and below its neighbouring cuts, its width, the stable and
effective ranks of ΔW, the distance of its whole profile to the Gaussian control's and between two
seeds of the method, and the training loss at equal steps: mean ± sd over seeds with the per-seed
values; differences are stated only when the seeds separate them (lab.present.seeds). Fine-tunes
and analyses are cached under ``WORKDIR/seed-S`` like ``lab demo``'s (reused when their options
are unchanged).

    python analyses/method_signatures.py [--workdir DIR] [--out DIR] [--budget P] [--steps N] [--seeds N] [--methods a,b,...]
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


SHAPE_COLUMNS = ["valley_neighbour_depth", "valley_width", "deepest_cut", "page_ratio_outer"]


def analyze_all(workdir: Path, configs: dict, retrained: set[str]) -> dict:
    """lab.analyze of each fine-tune's checkpoint against MiniLM (entanglement and spectra, random controls), cached."""
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
            options = run.manifest.get("options", {})
            current = (run.complete and method not in retrained and options.get("modules") == MODULES
                       and options.get("controls") is True
                       and set(SHAPE_COLUMNS) <= set(run.columns("entanglement_summary")))
        except LabError:
            current = False
        if not current:
            print(f"analysing {method} ({workdir.name})", file=sys.stderr)
            with one_blas_thread():
                run = lab.analyze(config.out, base=base, out=workdir / "results", run=method, controls=True,
                                  probes=["entanglement", "spectra"], modules=MODULES, overwrite=True, progress=False)
        runs[method] = run
    return runs


def _last(t: pd.DataFrame) -> pd.DataFrame:
    return t[t.step == t.step.max()] if "step" in t and t.step.notna().any() else t


def measure_seed(runs: dict, configs: dict, seed: int) -> dict:
    """One seed's numbers per method (one row each), its mean profiles and per-module profiles, from the stored tables."""
    from lab.present.valleys import profile_distance

    rows, profiles, per_module = [], [], {}
    gauss = None
    for method, run in runs.items():
        deltas = _last(run.table("deltas"))
        deltas = deltas[deltas.checkpoint != "controls"]
        table = run.table("entanglement_summary")
        summary = _last(table[table.source == "delta"])
        spectra = _last(run.table("spectra"))
        spectra = spectra[spectra.source == "delta"]
        ent = run.table("entanglement")
        profile = _last(ent[ent.source == "delta"])
        if gauss is None:
            g = ent[ent.source == "random"]
            gauss = g[g.module == g.module.iloc[0]] if len(g) else None
        bound = np.log(summary.rank_bound.astype(float))
        losses = [json.loads(line)["loss"] for line in (Path(configs[method].out) / "loss.jsonl").read_text().splitlines()]
        recorded = json.loads((Path(configs[method].out) / "finetune_config.json").read_text())
        rows.append({
            "method": method,
            "seed": seed,
            "kind": "+".join(sorted(set(deltas.kind))),
            "params": int(deltas.params.sum()),
            "size": _size(recorded),
            "rank_bound": int(summary.rank_bound.median()),
            "valley_entropy": float(summary.valley_entropy.mean()),
            "ln_rank_bound": float(bound.mean()),
            "room": float((bound - summary.valley_entropy).mean()),
            "bound_held": int((summary.valley_entropy <= bound + TOL).sum()),
            "modules": int(len(summary)),
            "valley_page": float(summary.valley_page_entropy.mean()),
            "valley_depth": float(summary.valley_depth.mean()),
            "neighbour_depth": float(summary.valley_neighbour_depth.mean()),
            "width": float(summary.valley_width.mean()),
            "page_ratio_outer": float(summary.page_ratio_outer.mean()),
            "stable_rank": float(spectra.stable_rank.mean()),
            "effective_rank": float(spectra.effective_rank.mean()),
            "to_gauss": profile_distance(profile, gauss) if gauss is not None else float("nan"),
            "fro_norm": float(deltas.fro_norm.mean()),
            "first_loss": float(np.mean(losses[:5])),
            "final_loss": float(np.mean(losses[-5:])),
            "losses": losses,
        })
        per_module[method] = profile
        p = profile.groupby("cut").agg(entropy=("entropy", "mean"), page=("page_entropy", "mean"),
                                       max_entropy=("max_entropy", "mean"), row_sites=("row_sites", "first")).reset_index()
        p["method"], p["seed"] = method, seed
        profiles.append(p)
    gauss_to_page = profile_distance(gauss, gauss.assign(entropy=gauss.page_entropy)) if gauss is not None else float("nan")
    return {"table": pd.DataFrame(rows), "profiles": pd.concat(profiles, ignore_index=True), "per_module": per_module,
            "gauss": gauss, "gauss_to_page": gauss_to_page}


SPREAD_COLUMNS = ("valley_entropy", "room", "valley_depth", "neighbour_depth", "width", "page_ratio_outer", "stable_rank",
                  "effective_rank", "to_gauss", "final_loss", "first_loss")


def measure(by_seed: dict[int, dict]) -> dict:
    """Across seeds: per method a Spread of each number, the seed-to-seed profile distance, and the pooled tables."""
    import itertools

    from lab.present.seeds import Spread
    from lab.present.valleys import profile_distance

    seeds = sorted(by_seed)
    table = pd.concat([by_seed[s]["table"] for s in seeds], ignore_index=True)
    present_ = set(table.method)
    methods = [m for m in METHODS if m in present_] + sorted(present_ - set(METHODS))
    spread = {}
    for method in methods:
        g = table[table.method == method].sort_values("seed")
        spread[method] = {c: Spread.of(g[c]) for c in SPREAD_COLUMNS}
        have = [s for s in seeds if method in by_seed[s]["per_module"]]  # --cached-only may lack some seeds
        spread[method]["within"] = Spread.of([profile_distance(by_seed[a]["per_module"][method], by_seed[b]["per_module"][method])
                                              for a, b in itertools.combinations(have, 2)])
        first = g.iloc[0]
        spread[method].update(size=first["size"], params=int(first.params), rank_bound=int(first.rank_bound),
                              ln_rank_bound=float(first.ln_rank_bound), valley_page=float(first.valley_page),
                              bound_held=int(g.bound_held.sum()), modules=int(g.modules.sum()), losses=first.losses)
    profiles = pd.concat([by_seed[s]["profiles"] for s in seeds], ignore_index=True)
    return {"seeds": seeds, "methods": methods, "table": table, "spread": spread, "profiles": profiles,
            "gauss": by_seed[seeds[0]]["gauss"], "gauss_to_page": Spread.of([by_seed[s]["gauss_to_page"] for s in seeds])}


def _size(recorded: dict) -> str:
    """What --budget chose for the method, as finetune_config.json records it ("r = 6", "fixed")."""
    pick = recorded.get("budget") or {}
    if pick.get("option"):
        return f"{pick['option']} = {pick['size']}"
    return "fixed" if pick else ""


def _err(s) -> float:
    return 0.0 if math.isnan(s.sd) else s.sd


def figure(found: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lab.present import colours

    spread, profiles, methods = found["spread"], found["profiles"], found["methods"]
    n = len(found["seeds"])
    palette = colours.use(methods)
    fig, axes = plt.subplots(2, 2, figsize=(12, 9), layout="constrained")
    ax = axes[0, 0]
    first = profiles[(profiles.method == methods[0]) & (profiles.seed == found["seeds"][0])]
    ax.plot(first.cut, first.page, color="0.45", ls="--", lw=1.2, label="Page: random state")
    ax.plot(first.cut, first.max_entropy, color="0.7", ls=":", lw=1.2, label="maximum ln min(D_left, D_right)")
    if found["gauss"] is not None:
        g = found["gauss"].sort_values("cut")
        ax.plot(g.cut, g.entropy, "s", mfc="none", ms=4, color="0.3", label="Gaussian control")
    for method in methods:
        p = profiles[profiles.method == method].groupby("cut").entropy.agg(["mean", "std"]).reset_index()
        ax.plot(p.cut, p["mean"], marker="o", ms=3, color=palette[method], label=method)
        ax.fill_between(p.cut, p["mean"] - p["std"].fillna(0), p["mean"] + p["std"].fillna(0), color=palette[method], alpha=0.2)
    ax.axvline(int(first.row_sites.iloc[0]), color="0.8", lw=0.8)
    ax.set(xlabel="cut k (row sites | column sites at the grey line)", ylabel="entropy S(k), nats (mean over modules)",
           title=f"Entanglement profile of ΔW, last checkpoint (band: ± sd over {n} seeds)")
    ax.legend(fontsize=7, ncols=2)

    ax = axes[0, 1]
    x = np.arange(len(methods))
    for i, (key, label) in enumerate((("valley_depth", "depth below Page"), ("neighbour_depth", "depth below the neighbouring cuts"),
                                      ("to_gauss", "distance to the Gaussian control's profile (RMS over cuts)"))):
        s = [spread[m][key] for m in methods]
        ax.bar(x + (i - 1) * 0.27, [v.mean for v in s], 0.27, yerr=[_err(v) for v in s], capsize=2, label=label, color=plt.cm.Set2(i))
        for j, v in enumerate(s):
            ax.plot([x[j] + (i - 1) * 0.27] * v.n, v.values, "k.", ms=3)
    w = [spread[m]["within"] for m in methods]
    ax.scatter(x + 0.27, [v.mean for v in w], marker="_", s=150, color="black", zorder=4, label="seed-to-seed distance")
    ax.set_xticks(x, methods, rotation=30)
    ax.set(ylabel="nats", title="The valley and the whole profile: mean ± sd over seeds, dots per seed")
    ax.legend(fontsize=7)

    ax = axes[1, 0]
    ax.bar(x - 0.2, [spread[m]["stable_rank"].mean for m in methods], 0.4, yerr=[_err(spread[m]["stable_rank"]) for m in methods],
           color=[palette[m] for m in methods], label="stable rank ‖ΔW‖²_F/σ₁²", capsize=2)
    ax.bar(x + 0.2, [spread[m]["effective_rank"].mean for m in methods], 0.4,
           yerr=[_err(spread[m]["effective_rank"]) for m in methods], color=[palette[m] for m in methods], alpha=0.45,
           label="effective rank exp(H(σ/Σσ))", capsize=2)
    ax.set_yscale("log")
    ax.set_xticks(x, methods, rotation=30)
    ax.set(ylabel="rank (log scale)", title="Spectra of ΔW: stable (solid) and effective (faint) rank, ± sd over seeds")
    ax.legend(fontsize=7)

    ax = axes[1, 1]
    window = 5
    table = found["table"]
    for method in methods:
        curves = np.array([row.losses for row in table[table.method == method].itertuples()])
        w = min(window, curves.shape[1])
        smooth = np.array([np.convolve(c, np.ones(w) / w, mode="valid") for c in curves])
        steps = np.arange(w, curves.shape[1] + 1)
        ax.plot(steps, smooth.mean(axis=0), color=palette[method], lw=1.4, label=method)
    ax.set(xlabel="step", ylabel=f"training loss (InfoNCE), mean of the last {window} steps, mean over seeds",
           title="Training loss at equal steps and budget (same batches for every method at one seed)")
    ax.legend(fontsize=7, ncols=2)
    fig.suptitle(f"PEFT methods on MiniLM's query and value projections at a matched parameter budget, {n} seeds", fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(found: dict, budget: int, steps: int, seconds: dict) -> str:
    from lab.present.seeds import separated

    sp, methods, n = found["spread"], found["methods"], len(found["seeds"])
    f = lambda v, d=3: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}g}"
    held = sum(sp[m]["bound_held"] for m in methods)
    total = sum(sp[m]["modules"] for m in methods)
    lines = [
        "# Method signatures: each PEFT method's entanglement at a matched parameter budget",
        "",
        f"all-MiniLM-L6-v2, query and value projections of its 6 layers (12 modules of 384×384), trained {steps} steps "
        f"on Python's standard-library docstrings (contrastive InfoNCE; at one seed every method sees the same batches), each "
        f"method sized by `lab finetune --budget {budget}`, seeds {', '.join(map(str, found['seeds']))}; ΔW measured by "
        "`lab analyze` against the base (last checkpoint); the last column says how many seeds each method has. Produced by "
        "`analyses/method_signatures.py`; every number is measured here, none is copied from a paper. Each cell is mean ± sd over seeds of the per-seed mean over the 12 "
        "modules; a difference is stated only when the seeds separate it (every seed's value of one beyond every seed's value "
        f"of the other, means apart by more than the two sds together), else it reads *not separated at {n} seeds*.",
        "",
        "![method signatures](method_signatures.png)",
        "",
        f"**Sanity check** (an identity, not a finding): valley entropy ≤ ln(structural rank bound) in {held}/{total} "
        "module-seeds: " + ("passed." if held == total else "**failed** (a reader's rank bound is wrong there)."),
        "",
        "| method | size | trainable params | rank bound | valley S (nats) | ln bound − S | depth below Page | "
        "depth below neighbours | width (cuts) | distance to Gaussian profile | seed-to-seed distance | stable rank | "
        "effective rank | loss, last 5 steps | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        s = sp[m]
        lines.append(f"| {m} | {s['size']} | {s['params']:,} | {s['rank_bound']} | {s['valley_entropy'].text()} | "
                     f"{s['room'].text()} | {s['valley_depth'].text()} | {s['neighbour_depth'].text()} | {s['width'].text(1)} | "
                     f"{s['to_gauss'].text()} | {s['within'].text()} | {s['stable_rank'].text(2)} | {s['effective_rank'].text(1)} | "
                     f"{s['final_loss'].text(4)} | {s['valley_entropy'].n} |")
    lines += ["", "Per seed (the numbers the means above are made of):", "",
              "| method | seed | valley S | depth below Page | distance to Gaussian profile | stable rank | loss, last 5 steps |",
              "|---|---|---|---|---|---|---|"]
    for row in found["table"].sort_values(["method", "seed"], key=lambda c: c.map(methods.index) if c.name == "method" else c).itertuples():
        lines.append(f"| {row.method} | {row.seed} | {f(row.valley_entropy)} | {f(row.valley_depth)} | {f(row.to_gauss)} | "
                     f"{f(row.stable_rank)} | {f(row.final_loss, 4)} |")
    g2p = found["gauss_to_page"]
    lines += ["", "## What the numbers say", ""]
    params = [sp[m]["params"] for m in methods]
    budget_spread = max(params) / max(min(params), 1)
    lines.append(f"- **Budgets.** The trainable-parameter counts range from {min(params):,} to {max(params):,} "
                 f"({budget_spread:.2g}×): " + ("matched within 2×." if budget_spread <= 2 else
                 "not all methods can reach the budget (IA3 has a fixed count; the others take the largest size that fits)."))
    order = sorted(methods, key=lambda m: sp[m]["valley_entropy"].mean)
    steps_sep = [separated(sp[a]["valley_entropy"].values, sp[b]["valley_entropy"].values) for a, b in zip(order, order[1:])]
    chain = order[0]
    for b, sep in zip(order[1:], steps_sep):
        chain += (" < " if sep else " ≈ ") + b
    lines.append(f"- **Valley entropy, lowest to highest** (< separated, ≈ not separated at {n} seeds): {chain}.")
    lines.append("- **Room under the structural ceiling** (ln bound − S; how far the update stays below what its structure "
                 "allows): " + ", ".join(f"{m} {sp[m]['room'].text(2)}" for m in sorted(methods, key=lambda m: -sp[m]['room'].mean)) + ".")
    # random-matrix comparison: the whole profile against the Gaussian control, beside the seed-to-seed distance
    floor = g2p.mean
    far = [m for m in methods if separated(sp[m]["to_gauss"].values, sp[m]["within"].values)
           and sp[m]["to_gauss"].mean > sp[m]["within"].mean]
    single = [m for m in methods if sp[m]["to_gauss"].n < 2]
    near = [m for m in methods if m not in far and m not in single]
    closest = min(methods, key=lambda m: sp[m]["to_gauss"].mean)
    if n < 2:
        verdict_text = "With one seed there is no seed-to-seed distance to set these against. "
    elif not near and not single:
        verdict_text = ("No method's update looks like a random matrix at every cut: for each, the distance to the Gaussian "
                        "profile is separated from (and larger than) the distance between two of its seeds. ")
    else:
        verdict_text = (f"Farther from the Gaussian profile than two of their seeds are from each other (separated): "
                        f"{', '.join(far) or 'none'}" + (f"; not separated at {n} seeds: {', '.join(near)}" if near else "")
                        + (f"; one seed only, no seed-to-seed distance to compare: {', '.join(single)}" if single else "") + ". ")
    lines.append(f"- **Against a random matrix, whole profile.** RMS distance over the 15 cuts between each method's ΔW profile "
                 f"and the Gaussian control's (which is itself {f(floor)} nats from Page's curve): "
                 + ", ".join(f"{m} {sp[m]['to_gauss'].text(2)}" for m in sorted(methods, key=lambda m: sp[m]['to_gauss'].mean))
                 + ". " + verdict_text + f"Closest to random: {closest} ({sp[closest]['to_gauss'].text(2)} nats, against "
                 f"a seed-to-seed distance of {sp[closest]['within'].text(2)}).")
    low = [m for m in methods if sp[m]["rank_bound"] < 384]
    full = [m for m in methods if sp[m]["rank_bound"] >= 384]
    if low and full:
        deep = [m for m in full if any(sp[m]["valley_depth"].mean > sp[l]["valley_depth"].mean
                                       or (min(sp[m]["valley_depth"].n, sp[l]["valley_depth"].n) > 1
                                           and not separated(sp[m]["valley_depth"].values, sp[l]["valley_depth"].values))
                                       for l in low)]
        lines.append(f"- **Full-rank structure, low-rank update.** Of the methods whose structural bound is the full 384 "
                     f"({', '.join(full)}), " + (", ".join(f"{m} (depth {sp[m]['valley_depth'].text(2)})" for m in deep)
                     + " reach or are not separated from the depth of a low-rank method" if deep else "none reaches the depth "
                     "of a low-rank method") + "; their rank bound is no ceiling on how concentrated the trained update is.")
    losses = sorted(methods, key=lambda m: sp[m]["final_loss"].mean)
    best, worst = losses[0], losses[-1]
    lines.append(f"- **Loss at equal steps.** Lowest mean loss over the last 5 steps: {best} ({sp[best]['final_loss'].text(4)}); "
                 f"highest: {worst} ({sp[worst]['final_loss'].text(4)}): "
                 + ("separated." if separated(sp[best]["final_loss"].values, sp[worst]["final_loss"].values)
                    else f"not separated at {n} seeds: the training loss does not order the methods here.")
                 + f" {steps} steps from a model already trained on this objective is short: early progress, not converged quality.")
    timed = {m: s for m, s in seconds.items() if not math.isnan(s)}
    if timed:
        lines.append("- **Training time here** (2 shared cores, this call's fine-tunes): "
                     + ", ".join(f"{m} {s:.0f} s" for m, s in timed.items()) + ".")
    lines += ["", "Depth below neighbours = mean S at cuts 7 and 9 − S at cut 8 (the row|column cut); width = consecutive cuts "
              "around cut 8 at least half as deep below Page as cut 8 (the `entanglement_summary` columns "
              "`valley_neighbour_depth`, `valley_width`). Distances between profiles are root-mean-square over the cuts per module, "
              "mean over modules; seed-to-seed is one value per pair of seeds of the method.", "",
              "Rank bounds are the readers' structural ones (the `deltas` table's `rank_bound`): r for LoRA, AdaLoRA's kept "
              "ranks, VeRA's r (or min(rows, cols) when r exceeds it, as the budget's r = 5760 does here), r1·r2 for LoHa, "
              "rank(W1)·rank(W2) for LoKr, min(rows, cols) for DoRA with its base (the magnitude rescales W's columns), IA3 "
              "and BOFT. IA3 has a fixed parameter count (one scaling vector per module), far below the budget."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="where fine-tunes and results are cached (one folder per seed)")
    parser.add_argument("--out", type=Path, default=ROOT / "output", help="folder for method_signatures.png and .md")
    parser.add_argument("--budget", type=int, default=73_728, help="trainable parameters per method (default: LoRA r = 8 on q, v)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 … N−1 (default 3)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--cached-only", action="store_true",
                        help="train nothing: report the finished fine-tunes only, each method over the seeds it has")
    args = parser.parse_args(argv)
    workdir = args.workdir or default_workdir()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    by_seed, seconds = {}, {}
    for seed in range(args.seeds):
        home = workdir / f"seed-{seed}"
        chosen = configs(home, methods, args.budget, args.steps, seed)
        if args.cached_only:  # only the finished fine-tunes: a partial grid, each method with the seeds it has
            from lab.finetune.train import is_complete

            chosen = {m: c for m, c in chosen.items() if is_complete(c.out, c)}
            if not chosen:
                continue
        trained = finetune_all(chosen)
        seconds.update({f"{m} (seed {seed})": s for m, s in trained.items()})
        runs = analyze_all(home, chosen, {m for m, s in trained.items() if not math.isnan(s)})
        by_seed[seed] = measure_seed(runs, chosen, seed)
    found = measure(by_seed)
    args.out.mkdir(parents=True, exist_ok=True)
    figure(found, args.out / "method_signatures.png")
    (args.out / "method_signatures.md").write_text(markdown(found, args.budget, args.steps, seconds))
    print(found["table"].drop(columns=["losses"]).to_string(index=False))
    print(f"wrote {args.out / 'method_signatures.md'} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
