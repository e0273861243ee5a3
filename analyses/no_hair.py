"""Do attention matrices follow an area law with a log correction, and do LoRA and full fine-tuning
look the same in the attention while they differ inside ΔW ("no-hair")?

The claims tested ("Artificial Entanglement in the Fine-Tuning of Large Language Models", arXiv
2601.06788; lab's DESIGN.md, "External artificial entanglement"):

1. the entropy profile S(ℓ) of attention matrices (ℓ = ln min(D_left, D_right) at each cut of the
   prime-factor chain of the L×L matrix) is fitted better by an area law with a logarithmic
   correction S = a + b·ln ℓ than by a volume law S = a + b·ℓ;
2. LoRA and full fine-tuning move the attention alike (entropy profile and attention rows against
   the base), while their updates differ inside the weights (ΔW of the query and value projections).

This script reads the runs of ``lab demo`` (all-MiniLM-L6-v2 tuned with LoRA r = 4, 16, 64 and
fully on the query and value projections; the demo computes the attention probe on 4 windows of
32 and 64 tokens) through lab's public API (``lab.store``; ``lab.demo.run_demo`` when the runs are
missing), and writes a figure and a markdown summary of what was measured, agreeing with the
claims or not. Criteria are stated with the numbers; the demo is small (few steps, few windows),
so the summary says what this demo shows, not what holds in general.

    python analyses/no_hair.py [--workdir DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lab.store import list_runs

ROOT = Path(__file__).resolve().parent
AGREE = 2.0  # "alike": the larger of two means at most this factor of the smaller (stated in the summary)


def default_workdir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("lab")) / "demo"


def load(workdir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The demo runs' attention summaries and profiles (last checkpoint of each run), with a method column."""
    runs = [r for r in list_runs(workdir / "results")] if (workdir / "results").is_dir() else []
    runs = [r for r in runs if r.complete and "attention_summary" in r.tables()]
    if not runs:
        from lab.demo import run_demo

        print(f"no demo runs with the attention probe under {workdir}; running `lab demo` there first", file=sys.stderr)
        run_demo(workdir, report=False)
        runs = [r for r in list_runs(workdir / "results") if r.complete and "attention_summary" in r.tables()]
    summary = pd.concat([r.table("attention_summary") for r in runs], ignore_index=True)
    profiles = pd.concat([r.table("attention_entanglement") for r in runs], ignore_index=True)
    out = []
    for t in (summary, profiles):
        t["method"] = np.where(t["run"].str.startswith("lora"), "lora", np.where(t["run"] == "full", "full", "other"))
        last = t.groupby("run")["step"].transform(lambda s: s.max() if s.notna().any() else np.nan)
        out.append(t[(t["step"] == last) | last.isna()].copy())
    return out[0], out[1]


def measure(summary: pd.DataFrame) -> dict:
    """The numbers the claims are judged by."""
    m: dict = {"rows": len(summary), "runs": sorted(summary["run"].unique())}
    m["area_wins_tuned"] = float((summary["better_fit"] == "area_log").mean())
    m["area_wins_base"] = float((summary["base_better_fit"] == "area_log").mean())
    m["r2"] = {k: float(summary[k].mean()) for k in ("volume_r2", "area_log_r2", "base_volume_r2", "base_area_log_r2")}
    by_method = summary.groupby("method")[["attention_tv", "entropy_diff", "q_rel_change", "v_rel_change",
                                           "q_weight_entropy_diff", "v_weight_entropy_diff"]].mean()
    m["by_method"] = by_method
    m["by_run"] = summary.groupby("run")[["attention_tv", "entropy_diff", "q_rel_change", "v_rel_change"]].mean()
    if {"lora", "full"} <= set(by_method.index):
        ratio = lambda col: float(max(by_method.loc["lora", col], by_method.loc["full", col])
                                  / max(min(by_method.loc["lora", col], by_method.loc["full", col]), 1e-300))
        m["outside_ratio"] = {c: ratio(c) for c in ("attention_tv", "entropy_diff")}
        m["inside_ratio"] = {c: ratio(c) for c in ("q_rel_change", "v_rel_change")}
    return m


def figure(summary: pd.DataFrame, profiles: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    L = int(profiles["seq_len"].max())
    p = profiles[profiles["seq_len"] == L]
    ell = p.groupby("cut")["max_entropy"].first()
    a.plot(ell.index, p.groupby("cut")["base_entropy"].mean(), "k-", lw=2, label="base")
    for method, g in p.groupby("method"):
        a.plot(ell.index, g.groupby("cut")["entropy"].mean(), "o--", label=method)
    a.plot(ell.index, ell.to_numpy(), ":", color="grey", label="ln min(D_left, D_right)")
    a.set_xlabel("cut k")
    a.set_ylabel("entropy (nats), mean over layers, heads, windows")
    a.set_title(f"attention profiles, L = {L}")
    a.legend(fontsize=8)
    runs = summary.groupby(["run", "method"])[["attention_tv", "q_rel_change"]].mean().reset_index()
    for method, g in runs.groupby("method"):
        b.scatter(g["q_rel_change"], g["attention_tv"], label=method, s=40)
        for r in g.itertuples():
            b.annotate(r.run, (r.q_rel_change, r.attention_tv), fontsize=7)
    b.set_xlabel("inside: ‖ΔW_q‖_F / ‖W_q‖_F (mean over layers)")
    b.set_ylabel("outside: mean TV of attention rows vs base")
    b.set_title("different inside, same outside?")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def _table(df: pd.DataFrame) -> str:
    """A markdown table of a frame with a named index (numbers to 4 significant digits)."""
    head = [df.index.name or ""] + list(df.columns)
    rows = [[str(i)] + [f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v) for v in r]
            for i, r in zip(df.index, df.to_numpy())]
    return "\n".join("| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head)] + rows)


def markdown(m: dict, figure_name: str) -> str:
    lines = ["# Attention: area law + log vs volume law, and the no-hair comparison", "",
             f"Runs: {', '.join(m['runs'])} (last checkpoint of each); {m['rows']} (checkpoint, layer, head, L) rows.", "",
             "## Claim 1: S = a + b·ln ℓ fits the attention profile better than S = a + b·ℓ", "",
             f"* fine-tuned: the area-log fit has the larger R² in {m['area_wins_tuned']:.0%} of rows; "
             f"base: {m['area_wins_base']:.0%}.",
             f"* mean R²: volume {m['r2']['volume_r2']:.3f}, area-log {m['r2']['area_log_r2']:.3f} "
             f"(base: {m['r2']['base_volume_r2']:.3f}, {m['r2']['base_area_log_r2']:.3f}).",
             f"* Criterion: the claim holds here if the area-log fit wins in more than half the rows: "
             f"**{'holds' if m['area_wins_tuned'] > 0.5 else 'does not hold'}** for the fine-tuned models, "
             f"**{'holds' if m['area_wins_base'] > 0.5 else 'does not hold'}** for the base.", "",
             "## Claim 2: LoRA and full fine-tuning agree outside, differ inside", "",
             "Means over layers, heads and lengths:", "",
             _table(m["by_method"]), "", "Per run:", "", _table(m["by_run"]), ""]
    if "outside_ratio" in m:
        out_alike = all(v <= AGREE for v in m["outside_ratio"].values())
        in_differ = any(v > AGREE for v in m["inside_ratio"].values())
        lines += [f"* outside, larger/smaller of LoRA vs full: attention TV {m['outside_ratio']['attention_tv']:.2f}×, "
                  f"entropy difference {m['outside_ratio']['entropy_diff']:.2f}×.",
                  f"* inside: ‖ΔW_q‖/‖W_q‖ {m['inside_ratio']['q_rel_change']:.2f}×, ‖ΔW_v‖/‖W_v‖ "
                  f"{m['inside_ratio']['v_rel_change']:.2f}×.",
                  f"* Criterion: alike when within a factor {AGREE:g}. Outside: **{'alike' if out_alike else 'not alike'}**; "
                  f"inside: **{'different' if in_differ else 'not different'}**. The no-hair claim "
                  f"**{'holds' if out_alike and in_differ else 'does not hold'}** in this demo."]
    else:
        lines.append("* The runs do not include both a LoRA and a full fine-tune: claim 2 cannot be judged.")
    lines += ["", f"![profiles and inside vs outside]({figure_name})", "",
              "The demo is small (few optimiser steps, 4 windows of 32 and 64 tokens): a measurement of these "
              "checkpoints, not a test of the claims in general."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=None, help="lab demo's working folder (default: its cache folder)")
    ap.add_argument("--out", type=Path, default=ROOT / "output", help="where the figure and markdown go")
    args = ap.parse_args()
    summary, profiles = load(args.workdir or default_workdir())
    m = measure(summary)
    args.out.mkdir(parents=True, exist_ok=True)
    figure(summary, profiles, args.out / "no_hair.png")
    (args.out / "no_hair.md").write_text(markdown(m, "no_hair.png"))
    print((args.out / "no_hair.md").read_text())


if __name__ == "__main__":
    main()
