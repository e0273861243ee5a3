"""``lab merge``: several PEFT adapters of one base into one loadable adapter, with its errors.

Registered by ``lab.cli``; user errors are ``LabError`` subclasses (one line, exit code 2), all
raised before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def merge_command(
    adapters: Annotated[list[Path], typer.Argument(help="Two or more PEFT LoRA adapter folders trained on one base.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the merged PEFT adapter (PeftModel.from_pretrained loads it).")],
    method: Annotated[str, typer.Option(help="stack (exact, FLoRA), linear (PEFT's index-wise average), svd (best rank k), lego (LoRA-LEGO k-means of units).")] = "stack",
    weights: Annotated[Optional[str], typer.Option(help="Comma-separated weights w_j of the sum Σ w_j·s_j·B_j·A_j (default: 1/J each, the mean).")] = None,
    rank: Annotated[Optional[int], typer.Option("--rank", help="Rank k of the merged adapter for svd and lego (default: the largest input rank).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of LEGO's k-means.")] = 0,
    reweight: Annotated[bool, typer.Option("--reweight/--no-reweight", help="LEGO's dual reweighting (centroid norms, output scale).")] = True,
    results: Annotated[Path, typer.Option(help="Results folder; the merge table goes to RESULTS/RUN/merge.parquet.")] = Path("results"),
    run: Annotated[str, typer.Option(help="Run folder that collects merges side by side.")] = "merges",
    base: Annotated[Optional[Path], typer.Option(help="The base model folder: with --texts, also the merged model's hidden-state error.")] = None,
    texts: Annotated[Optional[Path], typer.Option(help="Texts (one per line, or .jsonl) for the hidden-state error; needs --base.")] = None,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Window length L in tokens for the hidden-state error.")] = 64,
    windows: Annotated[int, typer.Option("--windows", help="Number of windows N for the hidden-state error.", min=1)] = 16,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")] = False,
) -> None:
    """Merge adapters (stack, linear, svd, lego) into one PEFT adapter and record its error against the exact weighted sum."""
    from lab.merge.adapters import merge_modules, merge_rows, read_adapter, write_adapter, write_merge_table
    from lab.probes.merging import MergeError

    inputs = [read_adapter(p) for p in adapters]
    if weights is None:
        w = [1.0 / len(inputs)] * len(inputs)
    else:
        try:
            w = [float(x) for x in weights.split(",") if x.strip()]
        except ValueError:
            raise MergeError(f"--weights {weights!r}: expected comma-separated numbers") from None
    names = [a.name for a in inputs]
    if len(set(names)) < len(names):  # the table names members by folder: make them unique
        for i, a in enumerate(inputs):
            a.name = f"{i}:{a.name}"
    merges = merge_modules(inputs, w, method, rank, seed=seed, reweight=reweight)
    if (base is None) != (texts is None):
        raise MergeError("the hidden-state error needs both --base and --texts")
    token_windows = None
    if base is not None:
        from lab.merge.hidden import windows_for

        token_windows = windows_for(base, texts, seq_len, windows)  # a short corpus fails before anything is written
    out = Path(out)
    dtype = inputs[0].dtype
    write_adapter(out, merges, inputs[0].config, dtype, overwrite=overwrite)
    rows = merge_rows(out.name, run, method, merges, dtype)
    if token_windows is not None:
        from dataclasses import replace

        from lab.merge.hidden import hidden_errors

        exact = [replace(m, merged=m.target) for m in merges]
        error = hidden_errors(base, [out], exact, inputs[0].config, dtype, token_windows)[0]
        for row in rows:
            row["hidden_rel_error"] = error  # one number per merged model, on each of its rows
    path = write_merge_table(results, run, rows)
    worst = max(rows, key=lambda r: r["rel_fro_error"])
    typer.echo(f"{out}: {method} of {len(inputs)} adapters, {len(rows)} modules; largest relative error "
               f"{worst['rel_fro_error']:.3g} ({worst['module']}, best rank-{worst['k']} {worst['optimal_rel_fro_error']:.3g})"
               + (f"; hidden states {rows[0]['hidden_rel_error']:.3g} of the exact merge's change" if token_windows else "")
               + f"; table {path}")
