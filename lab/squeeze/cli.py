"""``lab squeeze``: compress an adapter (or a full fine-tune) to a lower-rank PEFT LoRA adapter.

Registered by ``lab.cli``; user errors are ``LabError`` subclasses (one line, exit code 2), raised
before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from lab.errors import InputError


def squeeze_command(
    ckpt: Annotated[Path, typer.Argument(help="A PEFT LoRA adapter folder, an MPS adapter folder (lab finetune --method mps), or a full fine-tune (with --base).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the squeezed PEFT adapter (PeftModel.from_pretrained loads it).")],
    rank: Annotated[Optional[int], typer.Option("--rank", help="Target rank k of every module.")] = None,
    energy: Annotated[Optional[float], typer.Option("--energy", help="Instead of --rank: per module the smallest rank keeping this fraction of ‖ΔW‖_F² (e.g. 0.99), written with PEFT's rank_pattern.")] = None,
    base: Annotated[Optional[Path], typer.Option(help="The base model: needed for a full fine-tune (ΔW = W_ft − W_base, compressed by a randomized SVD).")] = None,
    modules: Annotated[Optional[str], typer.Option(help="Regular expression choosing modules by name.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the randomized SVD (full fine-tunes).")] = 0,
    power_iters: Annotated[int, typer.Option("--power-iters", help="Power iterations of the randomized SVD.", min=0)] = 4,
    steps: Annotated[int, typer.Option(help="Cont-Squeeze: train the squeezed adapter this many more steps at its rank and at the source run's scale α/r (its first checkpoint equals the Post-Squeeze update; a lab finetune source's corpus, data order and step numbers continue); 0: Post-Squeeze only. The run goes to OUT-steps/.", min=0)] = 0,
    texts: Annotated[Optional[Path], typer.Option(help="Texts for --steps (default: the input's fine-tuning corpus, else Python's docstrings).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate for --steps (default: the input run's, else LoRA's default).")] = None,
    results: Annotated[Path, typer.Option(help="Results folder; the squeeze table goes to RESULTS/RUN/squeeze.parquet.")] = Path("results"),
    run: Annotated[str, typer.Option(help="Run folder that collects squeezes side by side.")] = "squeezes",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")] = False,
) -> None:
    """LoRA-Squeeze's Post-Squeeze (with --steps, Cont-Squeeze): truncate each module's update by its
    SVD (exact from an adapter's factors, randomized for a full fine-tune) and write a PEFT adapter
    plus the squeeze table. In-Squeeze, the rank annealed during training, is lab finetune --squeeze-to."""
    from lab.squeeze.api import squeeze

    if (rank is None) == (energy is None):
        raise InputError("pass exactly one of --rank k and --energy FRACTION")
    done = squeeze(ckpt, out, rank=rank, energy=energy, base=base, modules=modules, seed=seed, power_iters=power_iters,
                   steps=steps, texts=texts, lr=lr, results=results, run=run, overwrite=overwrite)
    worst = max(done.rows, key=lambda r: r["rel_fro_error"])
    typer.echo(f"{out}: {len(done.rows)} modules squeezed to rank {', '.join(map(str, sorted({r['k'] for r in done.rows})))}; "
               f"largest relative error {worst['rel_fro_error']:.3g} ({worst['module']}); table {done.table}"
               + (f"; {steps} more steps in {done.continued}" if done.continued else ""))
