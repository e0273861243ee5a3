"""``lab squeeze --steps N``: a few more training steps of the squeezed adapter at its new rank
(LoRA-Squeeze's "in-tuning" variant: compress, then let the kept factors adapt).

The run is an ordinary ``lab finetune`` output (``checkpoint-N/``, ``loss.jsonl``) started from the
squeezed adapter (PEFT loads it trainable, rank_pattern and all). The corpus and training options
are the input's own when it came from ``lab finetune`` (its run folder's ``finetune_config.json``),
else the standard-library docstrings or ``texts``.
"""

from __future__ import annotations

import json
from pathlib import Path

from lab.finetune.config import CONFIG_FILE, FinetuneConfig

# options carried over from the input's fine-tune (everything that makes "the same corpus" and steps)
_CARRIED = ("texts", "max_docs", "max_length", "batch_size", "temperature", "seed", "threads", "target_modules")


def continue_training(adapter: Path, source: Path, out: Path, steps: int, base_path: str, rank: int, *,
                      texts: str | None = None, lr: float | None = None, overwrite: bool = False) -> Path:
    """Train the squeezed ``adapter`` for ``steps`` more steps; the run goes to ``out``."""
    from lab.finetune.train import finetune

    options = {}
    record = Path(source).parent / CONFIG_FILE
    if record.is_file():
        saved = json.loads(record.read_text()).get("options", {})
        options = {k: saved[k] for k in _CARRIED if k in saved}
        if lr is None and saved.get("method") == "lora":
            lr = saved.get("lr")
    if texts is not None:
        options["texts"] = texts
    config = FinetuneConfig(out=str(out), model=base_path, method="lora", r=rank, alpha=float(rank), steps=steps,
                            save_every=steps, lr=lr, init_adapter=str(adapter), **options)
    return finetune(config, overwrite=overwrite)
