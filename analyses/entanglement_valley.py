"""The entanglement valley of LoRA and of full fine-tuning (FFT), measured over seeds: depth, width, position, distance.

What the paper says (Artificial Entanglement, arXiv 2601.06788, abstract): LoRA's internal
entanglement in the query and value updates "follows a volume law with a central suppression
(termed as the 'Entanglement Valley'), which is sensitive to hyper-parameters and is distinct from
that in FFT"; its Figure 1 caption: the profiles have "distinctive entanglement valleys that differ
between FFT, LoRA and MPS adaptation". It does not say FFT has no valley. This script makes
"distinct" a measurement.

Treat an update ΔW (m×n) as a state ψ = vec(ΔW)/‖ΔW‖_F on a chain of prime-factor sites; at the
cut between row and column sites the entropy S is that of ΔW's normalised squared singular values.
Two statements follow from algebra and are reported as sanity checks only: S ≤ ln r for a rank-r
update, and a Gaussian matrix sits on Page's curve. The findings are what could have come out
otherwise: per module the valley's depth below Page's value and below its neighbouring cuts, its
width (cuts in the run around the row|column cut at least half as deep below Page), its position
(the cut deepest below Page), how far below ln r LoRA stays, how these move over training steps,
and the distance between the LoRA and FFT profiles beside the distance between two seeds of one
method. Each is reported as mean ± sd over seeds with the per-seed values; a difference is called a
finding only when the seeds separate it (lab.present.seeds.separated), else "not separated at N seeds".

The runs are ``lab demo``'s grid (all-MiniLM-L6-v2 tuned on Python's docstrings with LoRA r = 4,
16, 64, alpha = 2r, and fully, on the attention query and value projections, 30 steps,
``lab.demo.demo_configs(seed=s)``), one grid per seed under ``WORKDIR/seed-S``, fine-tuned and
analysed (entanglement probe with random controls) when not cached. A ``--workdir`` that is itself
a demo workdir (it has ``results/``) is read as one seed, nothing trained.

    python analyses/entanglement_valley.py [--workdir DIR] [--out DIR] [--seeds N]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lab.present.seeds import Spread, separated, verdict
from lab.present.valleys import profile_distance
from lab.store import list_runs

ROOT = Path(__file__).resolve().parent
TOL = 1e-9  # entropies are float64 sums; "≤ ln r" allows rounding
PAPER = "https://arxiv.org/abs/2601.06788"
SHAPE_COLUMNS = ["valley_neighbour_depth", "valley_width", "deepest_cut", "page_ratio_outer"]


def default_workdir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("lab")) / "entanglement_valley"


def seed_workdir(workdir: Path, seed: int) -> Path:
    return workdir / f"seed-{seed}"


def _current(folder: Path, retrained: bool) -> bool:
    from lab.errors import LabError
    from lab.store import open_run

    try:
        run = open_run(folder)
    except LabError:
        return False
    return (run.complete and not retrained and "entanglement_summary" in run.tables()
            and set(SHAPE_COLUMNS) <= set(run.columns("entanglement_summary")))


def prepare(workdir: Path, seed: int) -> list:
    """Fine-tune (when not cached) and analyse (entanglement probe, controls) the demo grid of one seed."""
    import lab
    from lab.demo import DEMO_MODULES, demo_configs, one_blas_thread
    from lab.finetune.models import minilm_path
    from lab.finetune.train import finetune, is_complete
    from lab.store import open_run

    home = seed_workdir(workdir, seed)
    runs = []
    for name, config in demo_configs(home, seed=seed).items():
        retrained = not is_complete(config.out, config)
        if retrained:
            print(f"seed {seed}: fine-tuning {name}", file=sys.stderr)
            finetune(config, overwrite=True)
        folder = home / "results" / name
        if _current(folder, retrained):
            runs.append(open_run(folder))
            continue
        print(f"seed {seed}: analysing {name}", file=sys.stderr)
        with one_blas_thread():
            runs.append(lab.analyze(config.out, base=minilm_path(), out=home / "results", run=name, probes=["entanglement"],
                                    modules=DEMO_MODULES, controls=True, overwrite=True, progress=False))
    return runs


def _method(run: pd.Series) -> pd.Series:
    return pd.Series(np.where(run.str.startswith("lora-r"), "lora", np.where(run == "full", "full", "other")), index=run.index)


def load(workdir: Path, seeds: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-cut profiles, per-matrix summaries and the deltas table of every seed's runs, with a ``seed`` column."""
    if (workdir / "results").is_dir():  # a demo workdir: its own runs, one seed
        by_seed = {0: [r for r in list_runs(workdir / "results") if r.complete and "entanglement_summary" in r.tables()]}
    else:
        by_seed = {s: prepare(workdir, s) for s in range(seeds)}
    frames = {"entanglement": [], "entanglement_summary": [], "deltas": []}
    for seed, runs in by_seed.items():
        for run in runs:
            if not (run.name.startswith("lora-r") or run.name == "full"):
                continue
            for name in frames:
                t = run.table(name)
                t["seed"] = seed
                frames[name].append(t)
    profiles, summary, deltas = (pd.concat(frames[n], ignore_index=True) for n in ("entanglement", "entanglement_summary", "deltas"))
    for t in (profiles, summary):
        t["method"] = _method(t["run"])
    return profiles, summary, deltas


def _order(runs) -> list[str]:
    return sorted(runs, key=lambda n: (n == "full", int(n[6:]) if n.startswith("lora-r") else 0))


def measure(profiles: pd.DataFrame, summary: pd.DataFrame) -> dict:
    """Every number of the figure and the markdown."""
    delta = summary[summary.source == "delta"]
    seeds = sorted(delta.seed.unique())
    steps = sorted(int(s) for s in delta.step.dropna().unique())
    last = steps[-1]
    runs = _order(delta.run.unique())
    found: dict = {"seeds": seeds, "steps": steps, "runs": runs}
    at_last = delta[delta.step == last]

    # sanity checks: identities of the algebra, one line each
    lora_all = delta[delta.method == "lora"]
    found["check_bound"] = (int((lora_all.valley_entropy <= np.log(lora_all.rank_bound) + TOL).sum()), int(len(lora_all)))
    gauss = profiles[profiles.source == "random"]
    found["check_gauss"] = float((gauss.entropy - gauss.page_entropy).abs().max()) if len(gauss) else float("nan")
    lora_runs = [r for r in runs if r.startswith("lora-r")]
    depth_by = delta[delta.method == "lora"].groupby(["seed", "step", "rank_bound"]).valley_depth.mean()
    ordered = [bool(np.all(np.diff(g.sort_index(level="rank_bound").to_numpy()) < 0))
               for _, g in depth_by.groupby(level=["seed", "step"])]
    found["check_order"] = (sum(ordered), len(ordered))

    # per run: each seed's mean over modules at the last step, then mean ± sd over seeds
    per_seed = at_last.groupby(["run", "seed"]).agg(
        entropy=("valley_entropy", "mean"), depth=("valley_depth", "mean"), neighbour=("valley_neighbour_depth", "mean"),
        width=("valley_width", "mean"), outer=("page_ratio_outer", "mean"), page=("valley_page_entropy", "mean"),
        at_cut=("deepest_cut", lambda c: float((c == at_last.loc[c.index, "valley_cut"]).mean())),
        module_sd=("valley_depth", "std"), rank_bound=("rank_bound", "median")).reset_index()
    found["per_seed"] = per_seed
    shape = {}
    for run in runs:
        g = per_seed[per_seed.run == run].sort_values("seed")
        shape[run] = {k: Spread.of(g[k]) for k in ("entropy", "depth", "neighbour", "width", "outer", "at_cut", "module_sd")}
        shape[run]["page"] = float(g.page.mean())
        shape[run]["rank_bound"] = int(g.rank_bound.iloc[0])
        shape[run]["modules"] = int(len(at_last[(at_last.run == run) & (at_last.seed == g.seed.iloc[0])]))
    found["shape"] = shape

    # structure alone: the controls' shape (a Gaussian matrix; a random B·A of each rank), one seeded draw each
    ctrl_rows = summary[summary.source.isin(["random", "random_lora"]) & (summary.seed == seeds[0])]
    ctrl_rows = ctrl_rows.drop_duplicates(["source", "rank_bound"]).sort_values(["source", "rank_bound"])
    found["controls"] = ctrl_rows[["source", "rank_bound", "valley_entropy", "valley_depth", "valley_neighbour_depth",
                                   "valley_width", "page_ratio_outer"]].reset_index(drop=True)

    # LoRA against FFT, per shape number
    full = "full" if "full" in runs else None
    found["vs_full"] = {}
    if full:
        for run in lora_runs:
            found["vs_full"][run] = {k: separated(shape[run][k].values, shape[full][k].values)
                                     for k in ("depth", "neighbour", "width", "outer")}

    # how far below ln r LoRA stays, against the random B·A control of the same rank
    ctrl = summary[summary.source == "random_lora"].groupby("rank_bound").valley_entropy.mean()
    found["room"] = {}
    for run in lora_runs:
        g = per_seed[per_seed.run == run]
        r = shape[run]["rank_bound"]
        found["room"][run] = {"r": r, "room": Spread.of(math.log(r) - g.entropy), "fill": Spread.of(g.entropy / math.log(r)),
                              "control_fill": float(ctrl.get(r, float("nan")) / math.log(r))}

    # over training steps: depth per step (mean ± sd over seeds) and each seed's change first → last
    found["trend"] = {}
    for run in runs:
        g = delta[delta.run == run].groupby(["seed", "step"]).agg(depth=("valley_depth", "mean"),
                                                                  neighbour=("valley_neighbour_depth", "mean")).reset_index()
        by_step = {int(s): Spread.of(h.sort_values("seed").depth) for s, h in g.groupby("step")}
        wide = g.pivot(index="seed", columns="step", values="depth")
        change = Spread.of(wide[last] - wide[steps[0]])
        found["trend"][run] = {"by_step": by_step, "change": change,
                               "moved": separated(change.values, [0.0] * change.n) if change.n > 1 else False}

    # distances between whole profiles: methods at one seed, one method between seeds, and to the Gaussian control
    prof = profiles[(profiles.source == "delta") & (profiles.step == last)]
    one = {(run, seed): prof[(prof.run == run) & (prof.seed == seed)] for run in runs for seed in seeds}
    found["within"] = {run: Spread.of([profile_distance(one[(run, a)], one[(run, b)]) for a, b in itertools.combinations(seeds, 2)])
                       for run in runs}
    g_prof = gauss[gauss.seed == seeds[0]]
    if len(g_prof):  # one Gaussian profile: every run carries the same seeded control
        g_prof = g_prof[(g_prof.run == g_prof.run.iloc[0]) & (g_prof.module == g_prof.module.iloc[0])]
    found["to_gauss"] = {run: Spread.of([profile_distance(one[(run, s)], g_prof) for s in seeds]) for run in runs} if len(g_prof) else {}
    if len(g_prof):
        page = g_prof.assign(entropy=g_prof.page_entropy)
        found["gauss_to_page"] = profile_distance(g_prof, page)
    rl = profiles[(profiles.source == "random_lora") & (profiles.seed == seeds[0])]
    found["to_random_lora"] = {}
    for run in lora_runs:
        r = shape[run]["rank_bound"]
        c = rl[rl.module.str.endswith(f" r{r}")]
        if len(c):
            c = c[(c.run == c.run.iloc[0]) & (c.module == c.module.iloc[0])]
            found["to_random_lora"][run] = Spread.of([profile_distance(one[(run, s)], c) for s in seeds])
    found["between"] = {}
    for a, b in itertools.combinations(runs, 2):
        d = Spread.of([profile_distance(one[(a, s)], one[(b, s)]) for s in seeds])
        noise = found["within"][a].values + found["within"][b].values
        found["between"][(a, b)] = {"distance": d, "noise": Spread.of(noise), "separated": separated(d.values, noise)}
    return found


def _mean_profile(profiles: pd.DataFrame, **where) -> pd.DataFrame:
    sel = profiles
    for k, v in where.items():
        sel = sel[sel[k] == v]
    per_seed = sel.groupby(["seed", "cut"]).entropy.mean().reset_index()
    out = per_seed.groupby("cut").entropy.agg(["mean", "std"]).reset_index()
    first = sel.groupby("cut").agg(page=("page_entropy", "mean"), maximum=("max_entropy", "mean"),
                                   row_sites=("row_sites", "first")).reset_index()
    return out.merge(first, on="cut")


def plot(profiles: pd.DataFrame, found: dict, path: Path) -> Path:
    """Four panels: mean profiles ± sd over seeds with Page's curve; the valley's shape per run;
    depth over training; profile distances between methods against those between seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last, runs, n = found["steps"][-1], found["runs"], len(found["seeds"])
    colors = dict(zip(runs, plt.cm.viridis(np.linspace(0.0, 0.75, len(runs)))))
    colors["full"] = "tab:red"
    fig, axes = plt.subplots(2, 2, figsize=(15, 10.5))

    ax = axes[0, 0]
    ref = None
    for name in runs:
        prof = _mean_profile(profiles, run=name, source="delta", step=last)
        ax.plot(prof.cut, prof["mean"], "o-", color=colors[name], label=f"{name} ΔW", ms=3)
        ax.fill_between(prof.cut, prof["mean"] - prof["std"].fillna(0), prof["mean"] + prof["std"].fillna(0),
                        color=colors[name], alpha=0.2)
        ref = prof
    gauss = profiles[profiles.source == "random"]
    if len(gauss):
        g = gauss.groupby("cut").entropy.mean()
        ax.plot(g.index, g.values, "s", mfc="none", color="grey", label="Gaussian control", ms=5)
    if ref is not None:
        ax.plot(ref.cut, ref.page, "k--", lw=1.2, label="Page's curve")
        ax.plot(ref.cut, ref.maximum, ":", color="black", lw=0.8, label="maximum ln min(D_L, D_R)")
        ax.axvline(int(ref.row_sites.iloc[0]), color="red", lw=0.8, alpha=0.6)
    ax.set(xlabel="cut k (sites left of the cut; red line: row|column cut)", ylabel="entropy S_k (nats)",
           title=f"(a) profile at step {last}: mean over modules, band ± sd over {n} seeds")
    ax.legend(fontsize=7, loc="upper left")

    ax = axes[0, 1]
    keys = [("depth", "depth below Page"), ("neighbour", "depth below the neighbouring cuts"), ("width", "width (cuts)")]
    x = np.arange(len(runs))
    for i, (key, label) in enumerate(keys):
        s = [found["shape"][r][key] for r in runs]
        ax.bar(x + (i - 1) * 0.27, [v.mean for v in s], 0.27, yerr=[0 if math.isnan(v.sd) else v.sd for v in s],
               capsize=3, label=label, color=plt.cm.Set2(i))
        for j, v in enumerate(s):
            ax.plot([x[j] + (i - 1) * 0.27] * v.n, v.values, "k.", ms=3)
    ax.set_xticks(x, runs)
    ax.set(ylabel="nats (depths) / cuts (width)", title=f"(b) the valley's shape at step {last}: mean ± sd over seeds, dots per seed")
    ax.legend(fontsize=7)

    ax = axes[1, 0]
    for name in runs:
        t = found["trend"][name]["by_step"]
        steps = sorted(t)
        ax.errorbar(steps, [t[s].mean for s in steps], yerr=[0 if math.isnan(t[s].sd) else t[s].sd for s in steps],
                    fmt="o-", color=colors[name], label=name, capsize=3)
    ax.set_xticks(found["steps"])
    ax.set(xlabel="training step", ylabel="valley depth below Page (nats)", title="(c) depth over training: mean ± sd over seeds")
    ax.legend(fontsize=7)

    ax = axes[1, 1]
    pairs = list(found["between"])
    labels = [f"{a} vs {b}" for a, b in pairs] + [f"{r}: seed vs seed" for r in runs]
    spreads = [found["between"][p]["distance"] for p in pairs] + [found["within"][r] for r in runs]
    y = np.arange(len(labels))
    ax.barh(y, [s.mean for s in spreads], xerr=[0 if math.isnan(s.sd) else s.sd for s in spreads], capsize=3,
            color=["tab:blue"] * len(pairs) + ["tab:grey"] * len(runs))
    ax.set_yticks(y, labels, fontsize=7)
    ax.set(xlabel="RMS distance between profiles over the cuts (nats), mean over modules",
           title="(d) distance between methods (blue) and between seeds of one method (grey)")

    fig.suptitle(f"Entanglement valley of MiniLM q,v updates: LoRA r = 4, 16, 64 (α = 2r) and full fine-tuning, "
                 f"{n} seeds, {last} steps on Python docstrings", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def markdown(found: dict, figure: str, deltas: pd.DataFrame) -> str:
    """The summary: the paper's words, the checks, then the measured shape with seeds."""
    n, last, runs, shape = len(found["seeds"]), found["steps"][-1], found["runs"], found["shape"]
    held, total = found["check_bound"]
    o_ok, o_all = found["check_order"]
    lines = [
        f"# Entanglement valley: LoRA and full fine-tuning over {n} seeds (lab demo's grid)",
        "",
        f"![entanglement valley]({figure})",
        "",
        "Runs: all-MiniLM-L6-v2 fine-tuned on Python standard-library docstrings (in-batch contrastive), LoRA r = 4, 16, 64 "
        "with α = 2r and full fine-tuning (FFT), all on the attention query and value projections (12 matrices of 384×384 per "
        f"checkpoint), checkpoints at steps {', '.join(map(str, found['steps']))}, seeds {', '.join(map(str, found['seeds']))} "
        "(the seed sets the adapter's initialisation and the batch order). Entropies in nats; the row|column cut is cut 8 of 16 "
        "sites (2⁷·3 | 2⁷·3). Every ± is the standard deviation over seeds of the per-seed mean over the 12 modules; a "
        "difference is called *separated* only when every seed's value of one lies beyond every seed's value of the other and "
        "the means differ by more than the two sds together; otherwise it reads *not separated at "
        f"{n} seeds*.",
        "",
        "## What the paper claims",
        "",
        f"Artificial Entanglement ([arXiv 2601.06788]({PAPER})), abstract: LoRA's internal entanglement \"follows a volume "
        "law with a central suppression (termed as the 'Entanglement Valley'), which is sensitive to hyper-parameters and is "
        "distinct from that in FFT\"; Figure 1's caption: the ΔW_Q and ΔW_V profiles show \"distinctive entanglement valleys "
        "that differ between FFT, LoRA and MPS adaptation\". The paper does not say that FFT has no valley; the question here "
        "is in what the valleys differ, and by more than seeds do.",
        "",
        "## Sanity checks (identities of the algebra, not findings)",
        "",
        f"* S ≤ ln r at the row|column cut for a rank-r update: {held}/{total} LoRA matrices (all seeds and steps): "
        + ("passed." if held == total else "**failed**."),
        f"* A Gaussian matrix follows Page's curve: largest |S_k − S_Page| = {found['check_gauss']:.4f} nats over its cuts: "
        + ("passed." if found["check_gauss"] < 0.01 else "**failed** (> 0.01 nats)."),
        f"* Depth ordered by r (depth(4) > depth(16) > depth(64), which the bound ln r makes expected): {o_ok}/{o_all} "
        "(seed, step) pairs: " + ("passed." if o_ok == o_all else "not everywhere."),
        "",
        f"## The valley's shape at step {last} (mean ± sd over {n} seeds; per-seed depths last)",
        "",
        "| run | S at the cut | depth below Page | depth below neighbours | width (cuts) | deepest cut = row\\|column cut "
        "(share of modules) | S/Page at the other cuts | depth sd over modules | depth per seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        s = shape[run]
        lines.append(f"| {run} | {s['entropy'].text()} | {s['depth'].text()} | {s['neighbour'].text()} | {s['width'].text(1)} | "
                     f"{s['at_cut'].text(2)} | {s['outer'].text()} | {s['module_sd'].text()} | {s['depth'].values_text()} |")
    lines += [
        "",
        "Depth below Page = Page's value − S at the row|column cut (Page there: "
        f"{shape[runs[0]]['page']:.3f}); depth below neighbours = mean S at cuts 7 and 9 − S at cut 8; width = the number of "
        "consecutive cuts around cut 8 whose depth below Page is at least half of cut 8's; deepest cut = the cut with the "
        "largest depth below Page (the columns `valley_neighbour_depth`, `valley_width`, `deepest_cut` and `page_ratio_outer` "
        "of the `entanglement_summary` table).",
        "",
    ]
    c = found["controls"]
    if len(c):
        lines += ["Structure alone (the controls, one seeded draw each): what a matrix of the shape, or a product of Gaussian "
                  "factors of rank r, gives without training.", "",
                  "| control | S at the cut | depth below Page | depth below neighbours | width | S/Page at the other cuts | "
                  "trained LoRA's distance to this profile |", "|---|---|---|---|---|---|---|"]
        for row in c.itertuples():
            name = "Gaussian 384×384" if row.source == "random" else f"random B·A, r = {int(row.rank_bound)}"
            run = f"lora-r{int(row.rank_bound)}" if row.source == "random_lora" else None
            dist = found["to_random_lora"].get(run) if run else None
            lines.append(f"| {name} | {row.valley_entropy:.3f} | {row.valley_depth:.3f} | {row.valley_neighbour_depth:.3f} | "
                         f"{row.valley_width} | {row.page_ratio_outer:.3f} | {dist.text() if dist else ''} |")
        lines += ["", "A random B·A of rank r already has a valley (its S nearly fills ln r), and a Gaussian matrix's "
                  "row|column cut is a peak, not a dip (negative depth below its neighbours: Page's curve is highest "
                  "there). What training adds beyond structure is LoRA against the random B·A of its rank (the control is "
                  "one draw whose own draw-to-draw spread is not measured here: 'outside' means outside the range of the "
                  "trained seeds, and a gap small against the trained sd is no evidence either way):", ""]
        for row in c[c.source == "random_lora"].itertuples():
            run = f"lora-r{int(row.rank_bound)}"
            if run not in shape:
                continue
            parts = []
            for key, col, label in (("depth", "valley_depth", "depth below Page"),
                                    ("neighbour", "valley_neighbour_depth", "depth below the neighbours")):
                sp, ref = shape[run][key], getattr(row, col)
                where = "inside" if min(sp.values) <= ref <= max(sp.values) else "outside"
                parts.append(f"{label} {sp.text()} trained vs {ref:.3f} random ({where})")
            lines.append(f"* r = {int(row.rank_bound)}: " + "; ".join(parts) + ".")
        lines.append("")
    if "full" in shape:
        f = shape["full"]
        lines.append(f"* **FFT has a valley too**, as the paper's own figure shows: {f['depth'].text(2)} nats below Page at the "
                     f"row|column cut and {f['neighbour'].text(2)} nats below its neighbouring cuts, deepest there in a share "
                     f"{f['at_cut'].text(2)} of the modules, where the Gaussian control of the same shape sits "
                     f"{found['check_gauss']:.4f} nats or less from Page at every cut and its row|column cut is a peak "
                     + (f"({float(c[c.source == 'random'].valley_neighbour_depth.iloc[0]):.2f} nats below its neighbours)."
                        if (c.source == "random").any() else "."))
        names = {"depth": "depth below Page", "neighbour": "depth below the neighbours", "width": "width",
                 "outer": "S/Page at the other cuts"}
        for run, sep in found["vs_full"].items():
            yes = [names[k] for k, v in sep.items() if v]
            no = [names[k] for k, v in sep.items() if not v]
            lines.append(f"* {run} against FFT: " + (f"separated in {', '.join(yes)}" if yes else "separated in nothing")
                         + (f"; not separated at {n} seeds in {', '.join(no)}" if no else "") + ".")
    lines += ["", "## How far below ln r LoRA stays (the finding under the bound)", ""]
    for run, r in found["room"].items():
        lines.append(f"* r = {r['r']}: ln r − S = {r['room'].text()} nats; S / ln r = {r['fill'].text(2)} (per seed "
                     f"{r['fill'].values_text(2)}); a random B·A of the same rank (control) fills {r['control_fill']:.3f} of "
                     "ln r: the trained spectra are far from flat.")
    lines += ["", "## How the depth moves over training steps", "",
              "| run | " + " | ".join(f"step {s}" for s in found["steps"]) + f" | change {found['steps'][0]} → {last} | per seed | |",
              "|---|" + "---|" * (len(found["steps"]) + 3)]
    for run in runs:
        t = found["trend"][run]
        lines.append(f"| {run} | " + " | ".join(t["by_step"][s].text() for s in found["steps"]) + f" | {t['change'].text()} | "
                     f"{t['change'].values_text()} | {('deepened' if t['change'].mean > 0 else 'shallower') if t['moved'] else f'not separated from 0 at {n} seeds'} |")
    lines += ["", "## Distinct profiles: distance between methods beside distance between seeds", "",
              "Distance = root-mean-square difference of two profiles over the 15 cuts, per module (matched by name), mean over "
              f"the 12 modules, at step {last}. Between methods: one value per seed (both at that seed). Between seeds: one "
              "value per pair of seeds of one method.", "",
              "| pair | distance between methods | seed-to-seed distance of the two | |", "|---|---|---|---|"]
    for (a, b), d in found["between"].items():
        lines.append(f"| {a} vs {b} | {d['distance'].text()} ({d['distance'].values_text()}) | {d['noise'].text()} | "
                     f"{'separated' if d['separated'] else f'not separated at {n} seeds'} |")
    lines += ["", "| run | seed-to-seed distance | distance to the Gaussian control's profile |", "|---|---|---|"]
    for run in runs:
        g = found["to_gauss"].get(run)
        lines.append(f"| {run} | {found['within'][run].text()} | {g.text() if g else 'n/a'} |")
    if "gauss_to_page" in found:
        lines.append(f"\nThe Gaussian control is {found['gauss_to_page']:.4f} nats (RMS) from Page's curve.")
    pairs_full = {k: v for k, v in found["between"].items() if "full" in k}
    if pairs_full:
        sep = [f"{a}" for (a, b), v in pairs_full.items() if v["separated"]]
        lines += ["", "* **Distinct, measured:** " + (
            f"the profiles of {', '.join(sep)} are farther from FFT's than two seeds of either method are from each other "
            "(separated)" if sep else "no LoRA profile is separated from FFT's beyond the seed-to-seed distance")
            + (f"; not separated at {n} seeds: {', '.join(a for (a, b), v in pairs_full.items() if not v['separated'])}"
               if len(sep) < len(pairs_full) else "") + "."]
    lines += [
        "",
        "## Caveats",
        "",
        f"* Short runs ({last} steps, batch 16; LoRA's B starts at zero): these updates are young; whether longer training "
        "fills the r directions or concentrates further is not settled by runs this short.",
        "* The entropy at the row|column cut is a function of ΔW's singular values alone (ln of its entropy rank): the valley "
        "there is a statement about the spectrum, read in MPS language. The neighbouring cuts and the width are not, but a "
        "rank-r update caps them too (at cuts 7 and 9 the Schmidt rank is at most 2r, since 384/192 = 2): part of LoRA's "
        "depth below its neighbours is structure as well, which is why the random B·A controls are beside it.",
        f"* {n} seeds: the separation rule is a plain screen, not a significance test. The seed sets LoRA's initial A and "
        "the batch order; a full fine-tune starts from the same weights at every seed, so only the batch order moves it, "
        "which is why FFT's seed-to-seed distance is the smallest.",
        "* Mean ‖ΔW‖_F at the last step (mean over seeds): " + ", ".join(
            f"{name} {g.fro_norm.mean():.3g}" for name, g in deltas[(deltas.step == last) & (deltas.checkpoint != 'controls')].groupby("run")) + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the seeds' runs are cached (default: the user cache dir, lab/entanglement_valley); a demo workdir is read as one seed")
    parser.add_argument("--out", type=Path, default=ROOT / "output", help="folder for entanglement_valley.png and .md")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 … N−1 of the demo grid (default 3)")
    args = parser.parse_args(argv)
    workdir = args.workdir or default_workdir()
    profiles, summary, deltas = load(workdir, args.seeds)
    found = measure(profiles, summary)
    figure = plot(profiles, found, args.out / "entanglement_valley.png")
    text = markdown(found, figure.name, deltas)
    (args.out / "entanglement_valley.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
