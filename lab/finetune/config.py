"""What determines a fine-tune, and the names of its output folder's files.

Kept apart from the training loop so that the command line can describe its options
without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import InputError

CONFIG_FILE = "finetune_config.json"
LOSS_FILE = "loss.jsonl"
COMPLETE_FILE = "COMPLETE"
METHODS = ("lora", "full", "mps")
# Adam learning rates that move the weights visibly within a few hundred steps without
# diverging: LoRA's factors tolerate a larger step than the pretrained weights themselves.
DEFAULT_LR = {"lora": 5e-4, "full": 5e-5, "mps": 5e-4}


@dataclass
class FinetuneConfig:
    """Everything that determines a fine-tune (same config and machine → same weights)."""

    out: str
    model: str = "minilm"  # minilm, smollm2, or a local transformers model folder
    method: str = "lora"  # lora, full or mps (MPS Adaptation, lab/finetune/mps.py)
    texts: str | None = None  # a text file instead of the standard-library docstrings
    r: int = 8
    alpha: float = 16.0
    rslora: bool = False  # scale α/√r instead of α/r (Kalajdzievski, 2023)
    chi: int = 8  # MPS bond dimension χ (method mps)
    d1: int | None = None  # MPS input split d_in = d1·d2 (method mps); None: the most balanced on the probe's chain
    init_adapter: str | None = None  # a PEFT adapter folder to start from (lora: training continues from its factors)
    dropout: float = 0.0
    target_modules: list[str] | None = None  # None: the architecture's query and value projections; ["all"]: every linear (LoRA) / every weight (full)
    steps: int = 100
    batch_size: int = 16
    lr: float | None = None  # None: DEFAULT_LR[method]
    save_every: int = 50
    max_length: int = 64
    seed: int = 0
    temperature: float = 0.05  # InfoNCE τ (sentence-transformers' scale 20)
    max_docs: int = 2048  # standard-library docstrings to collect
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    # One intra-op thread by default: CPU reductions split across threads round differently, so a
    # fixed count keeps "same seed, same weights" true across machines; and on a busy 2-core
    # machine one thread ran a step 3–10× faster than two oversubscribed ones (measured).
    threads: int = 1

    def validate(self) -> None:
        """Raise ``InputError`` naming the first option that cannot work."""
        if self.method not in METHODS:
            raise InputError(f"--method {self.method!r}: choose one of {', '.join(METHODS)}")
        for name in ("steps", "batch_size", "save_every", "max_length", "r", "max_docs", "threads"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if self.batch_size < 2:
            raise InputError("--batch-size must be at least 2 (in-batch negatives need a second example)")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"--dropout must be in [0, 1) (got {self.dropout})")
        if self.method == "mps" and self.chi < 1:
            raise InputError(f"--chi must be at least 1 (got {self.chi})")
        if self.init_adapter is not None and self.method != "lora":
            raise InputError(f"an initial adapter continues LoRA training only (got --method {self.method})")
        if self.lr is not None and not self.lr > 0:
            raise InputError(f"--lr must be positive (got {self.lr})")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]
