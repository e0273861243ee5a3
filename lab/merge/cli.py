"""``lab merge``: several PEFT adapters of one base into one loadable adapter, with its errors.

Registered by ``lab.cli``; user errors are ``LabError`` subclasses (one line, exit code 2), all
raised before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def merge_command(
    adapters: Annotated[list[Path], typer.Argument(help="Two or more PEFT LoRA adapter folders trained on one base, or kohya LoRA files (merged into a kohya file OUT/OUT.safetensors).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the merged PEFT adapter (PeftModel.from_pretrained loads it).")],
    method: Annotated[str, typer.Option(help="stack (exact, FLoRA), linear (PEFT's index-wise average), svd (best rank k), lego (LoRA-LEGO as its paper merges: k-means of units, dual reweighting, data-free), lego-oracle (the lab's earlier LEGO: output scale fitted to the exact sum, an oracle); task-vector methods on each module's dense update, as PEFT defines them, cut to --rank by the exact SVD: task_arithmetic (the weighted sum), ties (trim to --density by magnitude, elect sign, disjoint mean), dare_linear, dare_ties (drop with probability 1 - density, rescale; seeded), magnitude_prune. Full fine-tunes (model folders, with --base) merge with the task-vector methods into a model folder.")] = "stack",
    weights: Annotated[Optional[str], typer.Option(help="Comma-separated weights w_j of the sum Σ w_j·s_j·B_j·A_j (default: 1/J each, the mean).")] = None,
    rank: Annotated[Optional[int], typer.Option("--rank", help="Rank k of the merged adapter for svd, lego, lego-oracle and the task-vector methods (default: the largest input rank; task_arithmetic: the rank the sum needs).")] = None,
    density: Annotated[Optional[float], typer.Option("--density", help="Fraction of each update's entries kept (0 < d <= 1) by ties, dare_linear, dare_ties and magnitude_prune.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of DARE's drop masks (torch's generator) and of LEGO's k-means.")] = 0,
    reweight: Annotated[bool, typer.Option("--reweight/--no-reweight", help="LEGO's dual reweighting (centroids to their members' mean norm, output × √(r/k); lego-oracle: its own).")] = True,
    results: Annotated[Path, typer.Option(help="Results folder; the merge table goes to RESULTS/RUN/merge.parquet.")] = Path("results"),
    run: Annotated[str, typer.Option(help="Run folder that collects merges side by side.")] = "merges",
    base: Annotated[Optional[Path], typer.Option(help="The base model folder (or org/name from the local Hugging Face cache): with --texts, also the merged model's hidden-state error; with --eval-texts, the held-out losses; for DARE, the model's module order (PEFT's order of drawing the masks); required to merge full fine-tunes.")] = None,
    texts: Annotated[Optional[Path], typer.Option(help="Texts (one per line, or .jsonl) for the hidden-state error; needs --base.")] = None,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Window length L in tokens for the hidden-state error and --eval-texts.")] = 64,
    windows: Annotated[int, typer.Option("--windows", help="Number of windows N for the hidden-state error and --eval-texts.", min=1)] = 16,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")] = False,
    eval_texts: Annotated[Optional[str], typer.Option("--eval-texts", help="Comma-separated held-out text files (one text per line, or .jsonl): the loss of the merged adapter, each input and the base on each, to the merge_eval table; needs --base. Windows: --seq-len, --windows.")] = None,
) -> None:
    """Merge adapters (stack, linear, svd, lego) into one PEFT adapter and record its error against the exact weighted sum."""
    from lab.merge.api import merge
    from lab.kernels.merging import MergeError

    w = None
    if weights is not None:
        try:
            w = [float(x) for x in weights.split(",") if x.strip()]
        except ValueError:
            raise MergeError(f"--weights {weights!r}: expected comma-separated numbers") from None
    evals = [Path(x.strip()) for x in eval_texts.split(",") if x.strip()] if eval_texts else None
    done = merge(adapters, out, method, w, rank, seed=seed, reweight=reweight, results=results, run=run, base=base,
                 texts=texts, seq_len=seq_len, windows=windows, overwrite=overwrite, eval_texts=evals, density=density)
    rows, path, token_windows = done.rows, done.table, texts is not None
    if rows and rows[0]["k"] is None:  # full fine-tunes: no rank
        worst = max(rows, key=lambda r: r["rel_fro_error"])
        typer.echo(f"{out}: {method} of {done.adapters} full fine-tunes, {len(rows)} changed weight matrices; largest "
                   f"relative error against the exact weighted sum {worst['rel_fro_error']:.3g} ({worst['module']}); table {path}")
        rows = []
    worst = max(rows, key=lambda r: r["rel_fro_error"]) if rows else None
    if worst is not None:
        parts = "" if worst["method_rel_fro_error"] is None or method in ("stack", "svd") else (
            f"; the method itself {worst['method_rel_fro_error']:.3g}, the rank cut {worst['truncation_rel_fro_error']:.3g}")
        typer.echo(f"{out}: {method} of {done.adapters} adapters, {len(rows)} modules; largest relative error "
                   f"{worst['rel_fro_error']:.3g} ({worst['module']}, best rank-{worst['k']} {worst['optimal_rel_fro_error']:.3g}{parts})"
                   + (f"; hidden states {rows[0]['hidden_rel_error']:.3g} of the exact merge's change" if token_windows else "")
                   + f"; table {path}")
    if done.eval_rows:
        merged = [r for r in done.eval_rows if r["kind"] == "merged"]
        typer.echo("held-out loss (" + merged[0]["objective"] + "): " + "; ".join(
            f"{r['texts']} {r['loss']:.4g} (base {r['base_loss']:.4g})" for r in merged) + f"; table {done.eval_table}")
