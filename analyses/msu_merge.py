"""Merging fine-tunes of distinct corpora: does one merged adapter keep each adapter's task?

LoRA-LEGO (arXiv 2409.16167) claims several tasks in one adapter, so merges are judged here by
held-out loss per task, not only by ‖M − T‖_F (where the truncated SVD wins by Eckart–Young).

1. Corpora (offline, see :func:`corpus_texts`): ``docstrings`` (the standard library's docstrings,
   the fine-tuner's default corpus) and ``reference`` (the language reference text shipped in
   ``pydoc_data.topics``), each a list of texts with at least two sentences (the contrastive
   objective pairs a text's first sentence with the rest). Every fifth text is held out; the rest
   is the training file. ``--corpus NAME=FILE`` replaces them (one text per line).
2. Per seed s (``--seeds N``, cached like ``lab demo``'s runs: a finished fine-tune with the same
   options is reused), one LoRA fine-tune per corpus (``lab finetune``'s code, ``--steps`` steps,
   r = ``--r``, α = 2r, seed s) of the base (default all-MiniLM-L6-v2, trained contrastively).
3. The adapters of seed s merged with equal weights by ``lab merge`` (its public function) with
   stack (the exact mean), linear, svd, lego (the paper's, data-free) and lego-oracle (fitted to
   the exact mean: an oracle, for comparison) at rank k = r, each with ``--eval-texts`` the held-out
   files: the merge_eval table gives every merge's, every adapter's and the base's loss on each
   corpus (windows as the activation probes define them; the base's fine-tuning objective).
4. Per corpus: each model's loss as mean ± sd over seeds with the per-seed values; a difference is
   stated only when :func:`lab.present.seeds.separated` holds (per-seed ranges disjoint and means
   apart by more than both sds), else "not separated at N seeds".

Writes ``msu_merge.md`` and ``msu_merge.png`` (loss per model and corpus, seeds as dots).

    python analyses/msu_merge.py [--seeds 3] [--steps 20] [--workdir DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent
METHODS = ("stack", "linear", "svd", "lego", "lego-oracle")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)")


def corpus_texts(name: str) -> list[str]:
    """The texts of a built-in corpus, in a fixed order: only texts with two or more sentences."""
    if name == "docstrings":
        from lab.finetune.corpus import stdlib_docstrings

        texts = [d.text for d in stdlib_docstrings(limit=3000)]
    elif name == "reference":
        import pydoc_data.topics

        texts = []
        for _, text in sorted(pydoc_data.topics.topics.items()):
            texts += [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", text)]
    else:
        raise ValueError(f"unknown corpus {name!r}: docstrings or reference, or pass --corpus NAME=FILE")
    return [t for t in texts if len(t) >= 80 and _SENTENCE.search(t)]


def split_corpora(workdir: Path, corpora: dict[str, list[str]], every: int = 5) -> dict[str, tuple[Path, Path]]:
    """{name: (training file, held-out file)}: text i is held out when i % every == 0."""
    folder = workdir / "corpora"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, texts in corpora.items():
        texts = [re.sub(r"\s+", " ", t).strip() for t in texts if t.strip()]
        train, held = folder / f"{name}-train.txt", folder / f"{name}.txt"
        train.write_text("\n".join(t for i, t in enumerate(texts) if i % every) + "\n")
        held.write_text("\n".join(t for i, t in enumerate(texts) if i % every == 0) + "\n")
        out[name] = (train, held)
    return out


def finetune_adapters(workdir: Path, files: dict[str, tuple[Path, Path]], seeds: int, steps: int, r: int,
                      model: str, batch_size: int) -> dict[tuple[int, str], Path]:
    """{(seed, corpus): the last checkpoint of that fine-tune}, reusing finished runs with the same options."""
    from lab.finetune.config import FinetuneConfig
    from lab.finetune.train import finetune, is_complete

    out = {}
    for seed in range(seeds):
        for name, (train, _) in files.items():
            config = FinetuneConfig(out=str(workdir / "finetunes" / f"seed{seed}" / name), model=model, method="lora",
                                    texts=str(train), r=r, alpha=2.0 * r, steps=steps, save_every=steps,
                                    batch_size=batch_size, seed=seed)
            if not is_complete(config.out, config):
                print(f"fine-tuning {name} (seed {seed}, {steps} steps)", file=sys.stderr)
                finetune(config, overwrite=True)
            last = max(Path(config.out).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
            out[(seed, name)] = last
    return out


def measure(adapters: dict[tuple[int, str], Path], files: dict[str, tuple[Path, Path]], workdir: Path, base: Path,
            k: int, seq_len: int, windows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(merge_eval rows, merge rows) of every seed's merges, with a ``seed`` column."""
    from lab.merge.api import merge

    names = list(files)
    evals, errors = [], []
    for seed in sorted({s for s, _ in adapters}):
        paths = [adapters[(seed, n)] for n in names]
        for method in METHODS:
            if method == "linear" and len({_rank(p) for p in paths}) > 1:
                continue
            out = workdir / "merges" / f"seed{seed}" / method
            eval_rows, rows = _cached(workdir / "results" / f"seed{seed}", out, paths, names, seq_len, windows)
            if eval_rows is None:
                done = merge(paths, out, method, rank=None if method in ("stack", "linear") else k, seed=seed,
                             results=workdir / "results", run=f"seed{seed}", base=base, seq_len=seq_len,
                             windows=windows, overwrite=True, eval_texts=[files[n][1] for n in names])
                eval_rows, rows = done.eval_rows, done.rows
                (out / "DONE").write_text(f"{seq_len} {windows} {' '.join(names)}\n")
            inputs = list(dict.fromkeys(r["checkpoint"] for r in eval_rows if r["kind"] == "input"))  # in input order
            model = {**{c: f"adapter:{n}" for c, n in zip(inputs, names)}, "base": "base", out.name: method}
            evals += [{**row, "seed": seed, "model": model[row["checkpoint"]]} for row in eval_rows]
            errors += [{**row, "seed": seed} for row in rows]
    # an input adapter's and the base's rows repeat for every merge: keep one of each
    ev = pd.DataFrame(evals).drop_duplicates(subset=["seed", "model", "texts"])
    return ev, pd.DataFrame(errors)


def _cached(results: Path, out: Path, inputs: list[Path], names: list[str], seq_len: int, windows: int):
    """(merge_eval rows, merge rows) of a merge already made from these inputs with these windows, else (None, None):
    its DONE marker is newer than every input adapter and records the same windows and corpora."""
    done = out / "DONE"
    if not done.is_file() or done.read_text().split() != [str(seq_len), str(windows), *names]:
        return None, None
    if any((Path(p) / "adapter_model.safetensors").stat().st_mtime > done.stat().st_mtime for p in inputs):
        return None, None
    try:
        ev = pd.read_parquet(results / "merge_eval.parquet")
        mg = pd.read_parquet(results / "merge.parquet")
    except (OSError, ValueError):
        return None, None
    ev, mg = ev[ev.merged == out.name], mg[mg.checkpoint == out.name]
    if ev.empty or mg.empty or set(ev.texts) != set(names):
        return None, None
    clean = lambda df: [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in df.to_dict("records")]
    return clean(ev), clean(mg)


def _rank(path: Path) -> int:
    import json

    return int(json.loads((Path(path) / "adapter_config.json").read_text())["r"])


def summary(ev: pd.DataFrame, err: pd.DataFrame, names: list[str], seeds: int, args) -> str:
    from lab.present.seeds import Spread, separated, verdict

    def values(model, texts):
        g = ev[(ev.model == model) & (ev.texts == texts)].sort_values("seed")
        return g.loss.tolist()

    objective = ev.objective.iloc[0]
    models = ["base", *(f"adapter:{n}" for n in names), *(m for m in METHODS if m in set(ev.model))]
    lines = ["# Merging fine-tunes of distinct corpora: held-out loss per corpus", "",
             f"Base `{args.model}`, one LoRA fine-tune per corpus (r = {args.r}, α = {2 * args.r:g}, {args.steps} steps, "
             f"batch {args.batch_size}) per seed, {seeds} seeds; merges of the seed's adapters with equal weights at "
             f"rank k = {args.r} (stack keeps all {args.r * len(names)} units). Loss: {objective} "
             f"(the base's fine-tuning objective, lab/finetune/objectives.py) on the first {args.windows} windows of "
             f"{args.seq_len} tokens of each corpus's held-out fifth (the merge_eval table). Values: mean ± sd over "
             "seeds, then the per-seed values. lego-oracle fits its output scale to the exact mean, an oracle the "
             "paper does not have: shown for comparison, not as a method.", ""]
    lines += ["## What this run can say", ""]
    distinct = []
    for texts in names:
        own, b = values(f"adapter:{texts}", texts), values("base", texts)
        d = Spread.of(own).mean - Spread.of(b).mean
        moved = "lowered" if d < 0 else "raised"
        lines.append(f"- Fine-tuning on `{texts}` {moved} its held-out loss by {abs(d):.4f} against the base "
                     f"({verdict(own, b, seeds)}).")
        for other in names:
            if other != texts:
                o = values(f"adapter:{other}", texts)
                distinct.append(separated(own, o) and Spread.of(own).mean < Spread.of(o).mean)
                lines.append(f"- On `{texts}`, its own adapter against the `{other}` adapter: "
                             f"{Spread.of(own).mean - Spread.of(o).mean:+.4f} ({verdict(own, o, seeds)}).")
    if not any(distinct):
        lines.append(f"- No adapter is separated below the other adapter on its own corpus at {seeds} seeds: at this "
                     "training length the corpora do not make distinct tasks under this loss, so this run cannot show "
                     "whether a merge keeps one task without losing another; it can only compare the merges with the "
                     "adapters and the base, below.")
    lines.append("")
    for texts in names:
        lines += [f"## Held-out `{texts}`", "", "| model | loss (mean ± sd) | per seed |", "|---|---|---|"]
        for m in models:
            s = Spread.of(values(m, texts))
            if s.n:
                lines.append(f"| {m} | {s.text(4)} | {s.values_text(4)} |")
        own = f"adapter:{texts}"
        lines += ["", "Findings (a difference is stated only when the seeds separate it):", ""]
        for m in [*(f"adapter:{n}" for n in names if n != texts), *(m for m in METHODS if m in set(ev.model))]:
            a, o, b = values(m, texts), values(own, texts), values("base", texts)
            va, vb = verdict(a, o, seeds), verdict(a, b, seeds)
            mo = Spread.of(a).mean - Spread.of(o).mean
            mb = Spread.of(a).mean - Spread.of(b).mean
            lines.append(f"- {m}: {mo:+.4f} against the `{texts}` adapter ({va}), {mb:+.4f} against the base ({vb})")
        if {"lego", "svd"} <= set(ev.model):
            a, b = values("lego", texts), values("svd", texts)
            lines.append(f"- lego against svd at equal rank: {Spread.of(a).mean - Spread.of(b).mean:+.4f} ({verdict(a, b, seeds)})")
        if {"lego", "stack"} <= set(ev.model):
            a, b = values("lego", texts), values("stack", texts)
            lines.append(f"- lego against stack (the exact mean): {Spread.of(a).mean - Spread.of(b).mean:+.4f} ({verdict(a, b, seeds)})")
        lines.append("")
    lines += ["## Weight space: ‖M − T‖_F / ‖T‖_F against the exact mean T (mean over modules, then over seeds)", "",
              "| method | k | rel. Frobenius error | best rank-k (Eckart–Young) |", "|---|---|---|---|"]
    per = err.groupby(["method", "seed"], as_index=False)[["rel_fro_error", "optimal_rel_fro_error", "k"]].mean()
    for m in METHODS:
        g = per[per.method == m].sort_values("seed")
        if not g.empty:
            lines.append(f"| {m} | {int(g.k.iloc[0])} | {Spread.of(g.rel_fro_error).text(4)} | "
                         f"{Spread.of(g.optimal_rel_fro_error).text(4)} |")
    lines += ["", "svd is the best rank-k approximation of T by construction, so this column ranks merges by a measure "
              "svd wins; the held-out losses above are what the merges are for. The paper's lego is not aimed at T "
              "(its output scale √(r/k) is data-free), so a larger weight-space error is expected and says nothing "
              "about the tasks by itself.", ""]
    return "\n".join(lines)


def figure(ev: pd.DataFrame, names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = ["base", *(f"adapter:{n}" for n in names), *(m for m in METHODS if m in set(ev.model))]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.2), squeeze=False)
    for ax, texts in zip(axes[0], names):
        for i, m in enumerate(models):
            v = ev[(ev.model == m) & (ev.texts == texts)].loss.to_numpy()
            if v.size:
                colour = "gray" if m == "base" else "C0" if m.startswith("adapter") else "C1"
                # mean ± sd as a marker with bars (no bar from an arbitrary baseline), seeds as small dots beside it
                ax.errorbar(i, v.mean(), yerr=v.std(ddof=1) if v.size > 1 else 0, fmt="D", color=colour, capsize=4, ms=7)
                ax.plot(np.full(v.size, i + 0.18), v, ".", color="black", ms=4)
        ax.set_xticks(range(len(models)), models, rotation=45, ha="right", fontsize=8)
        lo = ev[ev.texts == texts].loss.min()
        hi = ev[ev.texts == texts].loss.max()
        ax.set_ylim(lo - 0.1 * (hi - lo + 1e-9), hi + 0.1 * (hi - lo + 1e-9))
        ax.set_title(f"held-out {texts} (mean ± sd over seeds; dots: seeds)", fontsize=9)
        ax.set_ylabel(f"loss ({ev.objective.iloc[0]})")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="cache folder (default: the user cache dir, lab/msu_merge)")
    parser.add_argument("--out", type=Path, default=ROOT / "output", help="folder for msu_merge.png and .md")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per fine-tune (each seed: its own adapters and merges)")
    parser.add_argument("--steps", type=int, default=20, help="fine-tuning steps per adapter")
    parser.add_argument("--r", type=int, default=8, help="LoRA rank of the fine-tunes and the merged rank k")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default="minilm", help="base model: minilm, smollm2 or a local folder")
    parser.add_argument("--corpus", action="append", default=None, metavar="NAME=FILE",
                        help="a corpus file (one text per line) instead of the built-in docstrings and reference")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--windows", type=int, default=16)
    args = parser.parse_args(argv)
    import platformdirs

    from lab.finetune.models import resolve_base

    workdir = args.workdir or Path(platformdirs.user_cache_dir("lab")) / "msu_merge"
    if args.corpus:
        from lab.finetune.corpus import text_file

        corpora = {spec.split("=", 1)[0]: text_file(spec.split("=", 1)[1]) for spec in args.corpus}
    else:
        corpora = {name: corpus_texts(name) for name in ("docstrings", "reference")}
    files = split_corpora(workdir, corpora)
    adapters = finetune_adapters(workdir, files, args.seeds, args.steps, args.r, args.model, args.batch_size)
    base = resolve_base(args.model).path
    ev, err = measure(adapters, files, workdir, base, args.r, args.seq_len, args.windows)
    args.out.mkdir(parents=True, exist_ok=True)
    names = list(files)
    figure(ev, names, args.out / "msu_merge.png")
    text = summary(ev, err, names, args.seeds, args)
    (args.out / "msu_merge.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
