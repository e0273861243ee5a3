"""No-hair as the paper poses it: do LoRA and full fine-tuning, which differ inside ΔW, look alike in
the attention? Measured on pairs of fine-tunes of one base, matched on update size, not on pools.

The claim ("Artificial Entanglement in the Fine-Tuning of Large Language Models", arXiv 2601.06788;
lab's DESIGN.md, "External artificial entanglement"): LoRA and full fine-tuning leave distinct
internal signatures, yet the differences do not show in the attention. Here every pair (a, b) of
the demo's final fine-tunes (all-MiniLM-L6-v2 tuned on the query and value projections with LoRA
r = 4, 16, 64 and fully, 30 steps each) goes through lab's ``no_hair`` probe (lab/probes/no_hair.py,
the ``no_hair`` table): per layer and window length, the inside distance (their ΔW_q, ΔW_v entropy
profiles, relative to Page's value) and five outside distances on the same windows, each beside
a's and b's distance from the base, with bootstrap 95 % intervals over windows.

Pairs are **matched on update size** (u = √(‖ΔW_q‖² + ‖ΔW_v‖²) / √(‖W_q‖² + ‖W_v‖²), mean over
layers; the demo records no held-out loss for full fine-tunes): a pair is matched when the larger
u is at most MATCH times the smaller. Matched and unmatched pairs are both reported.

Verdicts are stated only where intervals separate. Per (pair, measure, layer, L):
(The rule lives in lab/present/no_hair.py, shared with the dashboard and the report.)
* "closer": the a–b interval lies below both a's and b's interval from the base (a and b are
  nearer each other than either is to the base: the attention does not tell them apart as much as
  it tells each from the base);
* "farther": it lies above both;
* otherwise "not separated".

    python analyses/no_hair.py [--workdir DIR] [--out DIR] [--seq-len 32,64,128] [--windows 16]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from lab.present.no_hair import MATCH, MEASURES, pair_verdict, pairs as pairs_table, summary, with_verdicts

ROOT = Path(__file__).resolve().parent
RUNS = ("lora-r4", "lora-r16", "lora-r64", "full")
RUN_NAME = "no-hair"


def default_workdir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("lab")) / "demo"


def final_checkpoints(workdir: Path) -> dict[str, Path]:
    """The last saved checkpoint of each demo fine-tune (running ``lab demo``'s fine-tunes when missing)."""
    found = {}
    for name in RUNS:
        folder = workdir / "finetunes" / name
        steps = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])) if folder.is_dir() else []
        if (folder / "COMPLETE").is_file() and steps:
            found[name] = steps[-1]
    if len(found) < len(RUNS):
        from lab.demo import run_demo

        print(f"the demo's fine-tunes are missing under {workdir}; running `lab demo` there first", file=sys.stderr)
        run_demo(workdir, report=False)
        return final_checkpoints(workdir)
    return found


def measure_pairs(workdir: Path, seq_len: tuple[int, ...], windows: int) -> pd.DataFrame:
    """The no_hair table of every pair of the final fine-tunes (reused when a finished run has the same options)."""
    import lab
    from lab.errors import LabError
    from lab.finetune.models import minilm_path

    ckpts = final_checkpoints(workdir)
    kw = dict(base=minilm_path(), out=workdir / "results", run=RUN_NAME, probes=["no_hair"], seq_len=seq_len,
              windows=windows, progress=True)
    try:
        run = lab.analyze(list(ckpts.values()), resume=True, **kw)
    except LabError:  # a run with other inputs or options: redo it
        run = lab.analyze(list(ckpts.values()), overwrite=True, **kw)
    t = run.table("no_hair")
    short = lambda s: s.split("/")[0]  # noqa: E731  ("lora-r4/checkpoint-30" -> "lora-r4")
    t["first"], t["second"] = t["first"].map(short), t["second"].map(short)
    return t


def figures(t: pd.DataFrame, out: Path) -> list[str]:
    """The shared no-hair charts (lab.present.figures.no_hair) as PNG files; their names."""
    from lab.present.figures import no_hair as fig

    charts = {"no_hair.png": fig.distances_chart(t, "layer_output"), "no_hair_rows.png": fig.distances_chart(t, "rows"),
              "no_hair_inside.png": fig.inside_outside_chart(t, "layer_output")}
    for name, chart in charts.items():
        (out / name).write_bytes(chart.png())
        chart.close()
    return list(charts)


def _table(df: pd.DataFrame) -> str:
    head = list(df.columns)
    fmt = lambda v: f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)  # noqa: E731
    rows = [[fmt(v) for v in r] for r in df.to_numpy()]
    return "\n".join("| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head)] + rows)


def markdown(t: pd.DataFrame, pairs: pd.DataFrame, s: pd.DataFrame, figure_names: list[str]) -> str:
    lengths = ", ".join(str(L) for L in sorted(t.seq_len.unique()))
    n_w = int(t.windows.max())
    lines = ["# No-hair: LoRA beside full fine-tuning, pair by pair", "",
             f"The demo's final fine-tunes ({', '.join(RUNS)}) of all-MiniLM-L6-v2, every pair through lab's `no_hair` "
             f"probe: {n_w} windows of L = {lengths} tokens (standard-library docstrings), {t.layer.nunique()} layers, "
             f"bootstrap 95 % intervals over windows ({int(t.bootstrap.max())} resamples).", "",
             f"## Pairs, matched on update size (larger u ≤ {MATCH:g} × smaller)", "",
             "u = √(‖ΔW_q‖² + ‖ΔW_v‖²) / √(‖W_q‖² + ‖W_v‖²), mean over layers. Inside = mean over cuts of "
             "|S_a(ΔW) − S_b(ΔW)| / S_Page (q and v), mean over layers: no windows, so no interval.", "",
             _table(pairs[["pair", "kinds", "update_first", "update_second", "size_ratio", "matched", "inside_q",
                           "inside_v", "inside"]]), ""]
    for matched, title in ((True, "Matched pairs"), (False, "Unmatched pairs")):
        sub = pairs[pairs.matched == matched]
        lines += [f"## {title}", ""]
        if sub.empty:
            lines += ["None.", ""]
            continue
        for pair in sub.pair:
            lines.append(f"**{pair}** ({sub.set_index('pair').kinds[pair]}):")
            for m in MEASURES:
                rows = t[(t.pair == pair) & (t.measure == m)]
                lines.append(f"* {m}: {pair_verdict(rows)}; mean distance {rows.distance.mean():.4g} "
                             f"(a vs base {rows.first_base.mean():.4g}, b vs base {rows.second_base.mean():.4g}), "
                             f"no-hair ratio {rows.ratio.mean():.4g}")
            lines.append("")
    lf = pairs[pairs.kinds == "lora–full"]
    ll = pairs[pairs.kinds == "lora–lora"]
    lines += ["## What the numbers say", ""]
    if not lf.empty and not ll.empty:
        lines.append(f"* Inside, LoRA–full pairs are {lf.inside.min():.3g} … {lf.inside.max():.3g} apart and LoRA–LoRA "
                     f"pairs {ll.inside.min():.3g} … {ll.inside.max():.3g} (relative to Page's value; as measured, "
                     "no interval: the weights are not sampled).")
    outside = t[t.measure == "layer_output"].groupby("pair").distance.mean()
    for p in pairs[pairs.matched].itertuples():
        in_rank = int((pairs.inside > p.inside).sum()) + 1
        out_rank = int((outside < outside[p.pair]).sum()) + 1
        lines.append(f"* The matched pair {p.pair} ({p.kinds}): inside {p.inside:.3g}, rank {in_rank} of {len(pairs)} "
                     f"from the largest; layer-output distance {outside[p.pair]:.3g}, rank {out_rank} of {len(pairs)} "
                     "from the smallest (ranks of means, without intervals: descriptive only). Its verdicts per measure "
                     "are listed above; only rows whose intervals separate count as closer or farther.")
    for m in MEASURES:
        sub = t[t.measure == m]
        c = int((sub.verdict == "closer").sum())
        f = int((sub.verdict == "farther").sum())
        lines.append(f"* {m}: over all pairs, (layer, L) rows closer {c}, farther {f}, not separated "
                     f"{len(sub) - c - f} of {len(sub)}.")
    lines += ["", "Per pair and measure (means over layers and lengths; verdict counts over (layer, L) rows):", "",
              _table(s[["pair", "kinds", "matched", "measure", "distance", "first_base", "second_base", "ratio", "closer",
                        "farther", "not separated"]]), "",
              *[f"![{name}]({name})" for name in figure_names], "",
              "A verdict is read from intervals over windows only: it says how these checkpoints behave on these "
              "windows, not how LoRA and full fine-tuning behave in general (one seed per method, 30 steps, "
              "matching on update size only)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=None, help="lab demo's working folder (default: its cache folder)")
    ap.add_argument("--out", type=Path, default=ROOT / "output", help="where the figure and markdown go")
    ap.add_argument("--seq-len", default="32,64,128", help="window lengths L")
    ap.add_argument("--windows", type=int, default=16, help="windows per length")
    args = ap.parse_args()
    seq_len = tuple(int(x) for x in args.seq_len.split(","))
    t = with_verdicts(measure_pairs(args.workdir or default_workdir(), seq_len, args.windows))
    pairs = pairs_table(t)
    s = summary(t).merge(pairs[["pair", "matched", "kinds"]], on="pair")
    args.out.mkdir(parents=True, exist_ok=True)
    names = figures(t, args.out)
    (args.out / "no_hair.md").write_text(markdown(t, pairs, s, names))
    print((args.out / "no_hair.md").read_text())


if __name__ == "__main__":
    main()
