"""``lab squeeze --steps N``: Cont-Squeeze, LoRA-Squeeze's Post-Squeeze followed by N training steps
at the target rank (arXiv 2602.10993: "especially if a small number of fine-tuning steps at the
target rank is allowed").

The run is an ordinary ``lab finetune`` output (``checkpoint-N/``, ``loss.jsonl``) started from the
Post-Squeeze adapter (PEFT loads it trainable, rank_pattern and all) and trained **at the source
run's scale**: the Post-Squeeze adapter is written at scale 1 (r = lora_alpha = k), and a LoRA step
moves ΔW = s·B·A by an amount that grows with s, so training it at s = 1 instead of the source's
α/r would change the effective step size. The run therefore sets PEFT's scale of every module to the
source's s (α/r as trained, α/√r with rsLoRA; an MPS adapter's α/r; 1 for a full fine-tune, which
has none) and divides both factors by √s, so that the update is unchanged: its first checkpoint
(``checkpoint-<start>``, the adapter as loaded) has exactly the Post-Squeeze ΔW, and its
adapter_config.json says r = k, lora_alpha = s·k. When the source is a checkpoint of a ``lab
finetune`` run, the corpus and options are that run's (``finetune_config.json``) and the steps
continue its numbering and its data order (start = the source's step: the batches it would have
drawn next); else the standard-library docstrings or ``texts``, from step 0.
"""

from __future__ import annotations

import json
from pathlib import Path

from lab.errors import InputError
from lab.finetune.config import CONFIG_FILE, FinetuneConfig

# options carried over from the input's fine-tune (everything that makes "the same corpus" and steps)
_CARRIED = ("texts", "max_docs", "max_length", "batch_size", "temperature", "seed", "threads", "target_modules")


def source_scale(scales: list[float]) -> float:
    """The one scale s of the source's modules (Cont-Squeeze trains at it); one-line error if they differ."""
    distinct = sorted(set(float(s) for s in scales))
    if len(distinct) > 1 and distinct[-1] - distinct[0] > 1e-12 * distinct[-1]:
        raise InputError(f"the source adapter has several scales α/r ({', '.join(f'{s:.6g}' for s in distinct)}); "
                         "Cont-Squeeze (--steps) trains at one source scale")
    return distinct[0] if distinct else 1.0


def continue_training(adapter: Path, source: Path, out: Path, steps: int, base_path: str, rank: int, *,
                      scale: float = 1.0, start_step: int | None = None, texts: str | None = None,
                      lr: float | None = None, overwrite: bool = False) -> Path:
    """Train the Post-Squeeze ``adapter`` for ``steps`` more steps at PEFT scale ``scale``; the run goes to ``out``.

    ``start_step`` (the source checkpoint's step) continues the source run's data order and step
    numbers when the source's run record is found (ignored otherwise).
    """
    from lab.finetune.train import finetune

    options = {}
    record = Path(source).parent / CONFIG_FILE
    start = 0
    if record.is_file():
        saved = json.loads(record.read_text()).get("options", {})
        options = {k: saved[k] for k in _CARRIED if k in saved}
        if lr is None and saved.get("method") == "lora":
            lr = saved.get("lr")
        start = int(start_step or 0)
    if texts is not None:
        options["texts"] = texts
        start = 0  # another corpus: the source's data order means nothing there
    config = FinetuneConfig(out=str(out), model=base_path, method="lora", r=rank, alpha=scale * rank, steps=steps,
                            save_every=steps, lr=lr, init_adapter=str(adapter), init_scale=scale, start_step=start,
                            **options)
    return finetune(config, overwrite=overwrite)
