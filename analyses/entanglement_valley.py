"""Does a LoRA update have an entanglement valley at the row|column cut, and a full fine-tune not?

The claim tested (lab's DESIGN.md, "Internal artificial entanglement"): treat an update ΔW
(m×n) as a state ψ = vec(ΔW)/‖ΔW‖_F on a chain of prime-factor sites. At the cut between the
row and the column sites the entropy is that of ΔW's normalised squared singular values, so a
rank-r LoRA update has S ≤ ln r there: a valley, deeper the smaller r, while a random matrix of
the same shape follows Page's curve (Page, 1993, PRL 71, 1291) at every cut. Full fine-tuning is
claimed to show no such valley.

This script reads the runs of ``lab demo`` (all-MiniLM-L6-v2 tuned on Python's docstrings with
LoRA r = 4, 16, 64, alpha = 2r, and fully, on the attention query and value projections) through
lab's public API only (``lab.store``; ``lab.demo.run_demo`` when the runs are missing), and
writes a figure and a markdown summary of what was measured, agreeing with the claim or not.

    python analyses/entanglement_valley.py [--workdir DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lab.store import list_runs

ROOT = Path(__file__).resolve().parent
TOL = 1e-9  # entropies are float64 sums; "≤ ln r" allows rounding


def default_workdir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("lab")) / "demo"


def load(workdir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The demo runs' entropy profiles (one row per cut), valley summaries (one row per matrix) and
    the deltas table, from ``workdir/results``; runs the demo first when there are none."""
    runs = [r for r in list_runs(workdir / "results")] if (workdir / "results").is_dir() else []
    runs = [r for r in runs if r.complete and "entanglement_summary" in r.tables()]
    if not runs:
        from lab.demo import run_demo

        print(f"no analysed demo runs under {workdir}; running `lab demo` there first", file=sys.stderr)
        run_demo(workdir)
        runs = [r for r in list_runs(workdir / "results") if r.complete]
    profiles = pd.concat([r.table("entanglement") for r in runs], ignore_index=True)
    summary = pd.concat([r.table("entanglement_summary") for r in runs], ignore_index=True)
    deltas = pd.concat([r.table("deltas") for r in runs], ignore_index=True)
    for t in (profiles, summary):
        t["method"] = np.where(t["run"].str.startswith("lora"), "lora", np.where(t["run"] == "full", "full", "other"))
    return profiles, summary, deltas


def measure(profiles: pd.DataFrame, summary: pd.DataFrame) -> dict:
    """The numbers the claim is judged by (everything the figure and the markdown report)."""
    delta = summary[summary.source == "delta"]
    found: dict = {"steps": sorted(int(s) for s in delta.step.dropna().unique())}
    last = found["steps"][-1]

    # 1. LoRA: S at the row|column cut against ln r, per rank and step.
    lora = delta[delta.method == "lora"]
    per_rank = (lora.groupby(["rank_bound", "step"])
                    .agg(modules=("valley_entropy", "size"), entropy=("valley_entropy", "mean"),
                         entropy_max=("valley_entropy", "max"), page=("valley_page_entropy", "mean"),
                         depth=("valley_depth", "mean"))
                    .reset_index())
    per_rank["ln_r"] = np.log(per_rank["rank_bound"])
    found["lora"] = per_rank
    found["lora_bound_held"] = int((lora.valley_entropy <= np.log(lora.rank_bound) + TOL).sum())
    found["lora_matrices"] = int(len(lora))
    # depth grows as r shrinks: at every step, depth is strictly decreasing in r
    found["depth_monotone_steps"] = [
        int(step) for step, g in per_rank.groupby("step") if np.all(np.diff(g.sort_values("rank_bound").depth.to_numpy()) < 0)
    ]
    # how much of the room below ln r the trained update uses: S / ln r
    found["lora_fill"] = {int(r): float(g[g.step == last].entropy.mean() / math.log(r)) for r, g in per_rank.groupby("rank_bound")}

    # 2. Full fine-tuning: S at the same cut against Page and the Gaussian control.
    full = delta[delta.method == "full"]
    found["full"] = (full.groupby("step")
                         .agg(modules=("valley_entropy", "size"), entropy=("valley_entropy", "mean"),
                              entropy_std=("valley_entropy", "std"), entropy_min=("valley_entropy", "min"),
                              page=("valley_page_entropy", "mean"), maximum=("valley_max_entropy", "mean"),
                              depth=("valley_depth", "mean"))
                         .reset_index())

    # 3. Controls: the Gaussian matrix against Page's curve at every cut; random B·A against ln r.
    gauss = profiles[profiles.source == "random"]
    dev = (gauss.entropy - gauss.page_entropy).abs()
    found["gauss_max_abs_dev"] = float(dev.max()) if len(dev) else float("nan")
    found["gauss_max_rel_dev"] = float((dev / gauss.page_entropy).max()) if len(dev) else float("nan")
    found["gauss_cuts"] = int(gauss.drop_duplicates(["rows", "cols", "cut"]).shape[0]) if "rows" in gauss else int(gauss.cut.nunique())
    rl = summary[summary.source == "random_lora"].drop_duplicates(["rank_bound"])
    found["random_lora"] = {int(r.rank_bound): float(r.valley_entropy) for r in rl.itertuples()}
    gs = summary[summary.source == "random"].drop_duplicates(["rows", "cols"])
    found["gauss_valley"] = {f"{int(r.rows)}x{int(r.cols)}": (float(r.valley_entropy), float(r.valley_page_entropy)) for r in gs.itertuples()}

    # how the depth moved between the first and the last saved step, per run
    by_run = delta.groupby(["run", "step"]).valley_depth.mean()
    found["depth_trend"] = {run: (float(g.iloc[0]), float(g.iloc[-1])) for run, g in by_run.groupby(level=0)}

    # 4. Away from the valley: how close the updates' other cuts stay to Page (mean S/S_Page).
    found["outer_page_ratio"] = delta[delta.step == last].groupby("run").page_ratio_mean.mean().to_dict()
    return found


def _mean_profile(profiles: pd.DataFrame, **where) -> pd.DataFrame:
    sel = profiles
    for k, v in where.items():
        sel = sel[sel[k] == v]
    return sel.groupby("cut").agg(entropy=("entropy", "mean"), page=("page_entropy", "mean"),
                                  maximum=("max_entropy", "mean"), row_sites=("row_sites", "first")).reset_index()


def plot(profiles: pd.DataFrame, summary: pd.DataFrame, found: dict, path: Path) -> Path:
    """Three panels: the mean entropy profile at the last step with Page's curve and ln r; the
    row|column entropy against r with the controls; the valley depth over training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last = found["steps"][-1]
    runs = sorted(summary[summary.source == "delta"].run.unique(), key=lambda n: (n == "full", int(n[6:]) if n.startswith("lora-r") else 0))
    colors = dict(zip(runs, plt.cm.viridis(np.linspace(0.0, 0.75, len(runs)))))
    colors["full"] = "tab:red"  # the odd one out: not low-rank by construction
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))

    ax = axes[0]
    ref = None
    for name in runs:
        prof = _mean_profile(profiles, run=name, source="delta", step=last)
        ax.plot(prof.cut, prof.entropy, "o-", color=colors[name], label=f"{name} ΔW (step {last})", ms=3)
        ref = prof
    gauss = _mean_profile(profiles, source="random")
    if len(gauss):
        ax.plot(gauss.cut, gauss.entropy, "s", mfc="none", color="grey", label="random Gaussian control", ms=5)
    if ref is not None:
        ax.plot(ref.cut, ref.page, "k--", lw=1.2, label="Page's curve")
        ax.plot(ref.cut, ref.maximum, ":", color="black", lw=0.8, label="maximum ln min(D_L, D_R)")
        ax.axvline(int(ref.row_sites.iloc[0]), color="red", lw=0.8, alpha=0.6)
        ax.text(int(ref.row_sites.iloc[0]) + 0.15, ref.maximum.max() * 1.01, "row|column cut", color="red", fontsize=8)
    for r in sorted(found["lora"].rank_bound.unique()):
        ax.axhline(math.log(r), color=colors.get(f"lora-r{r}", "grey"), lw=0.8, ls="-.")
        ax.text(0.6, math.log(r) + 0.06, f"ln {r}", fontsize=8, color=colors.get(f"lora-r{r}", "grey"))
    ax.set_xlabel("cut k (sites left of the cut)")
    ax.set_ylabel("entanglement entropy S_k (nats)")
    ax.set_title("(a) entropy profile, mean over q,v modules")
    ax.legend(fontsize=7, loc="upper left")

    ax = axes[1]
    lora = found["lora"]
    shades = plt.cm.Blues(np.linspace(0.45, 1.0, lora.step.nunique()))
    for shade, (step, g) in zip(shades, lora.groupby("step")):
        ax.plot(g.rank_bound, g.entropy, "o-", color=shade, label=f"trained LoRA ΔW, step {int(step)}")
    rs = np.array(sorted(lora.rank_bound.unique()))
    ax.plot(rs, np.log(rs), "k-.", lw=1, label="ln r (bound)")
    if found["random_lora"]:
        rr = sorted(found["random_lora"])
        ax.plot(rr, [found["random_lora"][r] for r in rr], "s--", mfc="none", color="grey", label="random B·A control")
    full = found["full"]
    if len(full):
        f = full[full.step == full.step.max()].iloc[0]
        ax.axhline(f.entropy, color=colors["full"], lw=2, label=f"full fine-tuning ΔW, step {int(f.step)} (± std)")
        ax.axhspan(f.entropy - f.entropy_std, f.entropy + f.entropy_std, color=colors["full"], alpha=0.12)
        ax.axhline(f.page, color="black", ls="--", lw=1.2, label="Page at this cut")
    ax.set_xscale("log", base=2)
    ax.set_xticks(rs, [str(r) for r in rs])
    ax.set_xlabel("LoRA rank r")
    ax.set_ylabel("S at the row|column cut (nats)")
    ax.set_title("(b) valley entropy against r and the controls")
    ax.legend(fontsize=7)

    ax = axes[2]
    delta = summary[summary.source == "delta"]
    for name in runs:
        g = delta[delta.run == name].groupby("step").valley_depth.agg(["mean", "std"]).reset_index()
        ax.errorbar(g.step, g["mean"], yerr=g["std"], fmt="o-", color=colors[name], label=name, capsize=3)
    gs = summary[summary.source == "random"]
    if len(gs):
        ax.axhline(gs.valley_depth.mean(), color="grey", ls="--", lw=1, label="random Gaussian control")
    ax.set_xticks(found["steps"])
    ax.set_xlabel("training step")
    ax.set_ylabel("valley depth S_Page − S at the row|column cut (nats)")
    ax.set_title("(c) valley depth during training (mean ± std over modules)")
    ax.legend(fontsize=7)

    fig.suptitle("Entanglement valley of MiniLM q,v updates: LoRA r = 4, 16, 64 (α = 2r) vs full fine-tuning, "
                 "on Python docstrings (lab demo)", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def _increasing_in_r(by_run: dict[str, float]) -> bool:
    lora = sorted((int(k[6:]), v) for k, v in by_run.items() if k.startswith("lora-r"))
    return len(lora) > 1 and all(b[1] > a[1] for a, b in zip(lora, lora[1:]))


def markdown(found: dict, figure: str, deltas: pd.DataFrame) -> str:
    """The summary: what was measured, and how it compares with the claim."""
    last = found["steps"][-1]
    lora, full = found["lora"], found["full"]
    lines = [
        "# Entanglement valley: LoRA vs full fine-tuning (lab demo runs)",
        "",
        f"![entanglement valley]({figure})",
        "",
        "Runs: all-MiniLM-L6-v2 fine-tuned on Python standard-library docstrings (in-batch contrastive), "
        "LoRA r = 4, 16, 64 with α = 2r and full fine-tuning, all on the attention query and value "
        f"projections (12 matrices of 384×384 per checkpoint), checkpoints at steps {', '.join(map(str, found['steps']))}. "
        "Entropies in nats; the row|column cut is cut 8 of 16 sites (2⁷·3 | 2⁷·3).",
        "",
        "## LoRA: S at the row|column cut against ln r",
        "",
        "| r | step | modules | mean S | max S | ln r | Page | mean depth |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in lora.sort_values(["rank_bound", "step"]).itertuples():
        lines.append(f"| {int(row.rank_bound)} | {int(row.step)} | {int(row.modules)} | {row.entropy:.3f} | {row.entropy_max:.3f} | "
                     f"{row.ln_r:.3f} | {row.page:.3f} | {row.depth:.3f} |")
    held, total = found["lora_bound_held"], found["lora_matrices"]
    mono = found["depth_monotone_steps"]
    lines += [
        "",
        f"* S ≤ ln r held for {held} of {total} LoRA matrices" + (" (all)." if held == total else " — **violations present**."),
        f"* Depth grows as r shrinks (depth(4) > depth(16) > depth(64)) at {len(mono)} of {len(found['steps'])} steps"
        + (f" ({', '.join(map(str, mono))})." if mono else "."),
        "* How much of the room under ln r the trained update uses at the last step (mean S / ln r): "
        + ", ".join(f"r = {r}: {v:.2f}" for r, v in sorted(found["lora_fill"].items()))
        + ". A random B·A of the same rank (control) reaches "
        + ", ".join(f"{v:.3f} (ln {r} = {math.log(r):.3f})" for r, v in sorted(found["random_lora"].items()))
        + ": trained adapters sit well below the bound, their singular values far from flat.",
        "",
        "## Full fine-tuning: S at the same cut",
        "",
        "| step | modules | mean S | std | min S | Page | maximum | mean depth |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in full.itertuples():
        lines.append(f"| {int(row.step)} | {int(row.modules)} | {row.entropy:.3f} | {row.entropy_std:.3f} | {row.entropy_min:.3f} | "
                     f"{row.page:.3f} | {row.maximum:.3f} | {row.depth:.3f} |")
    if len(full):
        f = full[full.step == last].iloc[0]
        gauss_depth = np.mean([p - s for s, p in found["gauss_valley"].values()]) if found["gauss_valley"] else float("nan")
        deepest_lora = lora[lora.step == last].depth.min()
        verdict = ("**This disagrees with the claim that full fine-tuning shows no valley**: its updates sit "
                   f"{f.depth:.2f} nats below Page at the row|column cut, against {gauss_depth:.4f} for a Gaussian "
                   "matrix of the same shape, though shallower than every LoRA rank "
                   f"(shallowest LoRA depth {deepest_lora:.2f})."
                   if f.depth > 0.1 else
                   f"Full fine-tuning shows no valley: depth {f.depth:.3f} nats, as the Gaussian control ({gauss_depth:.4f}).")
        lines += [
            "",
            f"* {verdict}",
            f"* exp(S) — the effective number of directions in the update — is {math.exp(f.entropy):.0f} of 384 for full "
            f"fine-tuning at step {last}, against {', '.join(f'{math.exp(g.entropy):.1f} of {int(g.rank_bound)}' for g in lora[lora.step == last].itertuples())} for LoRA. "
            "A few Adam steps from one starting point move the weights along a few gradient directions shared across "
            "batches: the update of a short full fine-tune is effectively low-rank too, only not exactly so.",
        ]
    lines += [
        "",
        "## Controls against Page's curve",
        "",
        f"* Random Gaussian matrices of the analysed shape: largest |S_k − S_Page| over {found['gauss_cuts']} cuts = "
        f"{found['gauss_max_abs_dev']:.4f} nats (relative {100 * found['gauss_max_rel_dev']:.3f} %): the controls follow Page's curve.",
    ]
    for shape, (s, p) in found["gauss_valley"].items():
        lines.append(f"* Gaussian {shape} at the row|column cut: S = {s:.4f}, Page = {p:.4f}.")
    lines += [
        "* Away from the valley (mean S/S_Page over the other cuts at the last step; 1 = Page): "
        + ", ".join(f"{k} {v:.3f}" for k, v in sorted(found["outer_page_ratio"].items()))
        + (". The outermost cuts follow Page, but the cuts next to the row|column cut are pulled down with it, the more "
           "the smaller r (panel a): the volume law holds only near the ends of the chain."
           if _increasing_in_r(found["outer_page_ratio"]) else
           ". (These ratios are not ordered by r; see panel a for where the profiles leave Page's curve.)"),
        "",
        "## Caveats",
        "",
        f"* Short runs ({last} steps, batch 16): LoRA's B starts at zero, so these updates are young. Over the saved steps "
        + ("the valley deepened in every run: " if all(b > a for a, b in found["depth_trend"].values()) else "the mean valley depth went ") + ", ".join(f"{name} {a:.2f} → {b:.2f}" for name, (a, b) in sorted(found["depth_trend"].items()))
        + " nats; whether longer training fills the r directions (shallower) or concentrates further (deeper) is not "
        "settled by runs this short.",
        "* The entropy at the row|column cut is a function of the singular values alone (it equals ln of the entropy rank in "
        "the spectra table); the valley is a statement about the spectrum of ΔW, read in the language of MPS.",
        f"* Mean ‖ΔW‖_F at the last step: " + ", ".join(
            f"{name} {g.fro_norm.mean():.3g}" for name, g in deltas[deltas.step == last].groupby("run")) + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="lab demo's workdir (default: the user cache dir, lab/demo)")
    parser.add_argument("--out", type=Path, default=ROOT / "output", help="folder for entanglement_valley.png and .md")
    args = parser.parse_args(argv)
    workdir = args.workdir or default_workdir()
    profiles, summary, deltas = load(workdir)
    found = measure(profiles, summary)
    figure = plot(profiles, summary, found, args.out / "entanglement_valley.png")
    text = markdown(found, figure.name, deltas)
    (args.out / "entanglement_valley.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
