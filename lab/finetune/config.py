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
# The PEFT methods (lab/finetune/methods.py), then full fine-tuning and MPS Adaptation
METHODS = ("lora", "dora", "adalora", "loha", "lokr", "vera", "ia3", "boft", "full", "mps")
# Adam learning rates that move the weights visibly within a few hundred steps without
# diverging: LoRA's factors tolerate a larger step than the pretrained weights themselves. VeRA
# and IA3 train only scaling vectors and need about ten times LoRA's step: the VeRA paper's GLUE
# runs use 4e-3 to 1e-2 where LoRA's use 4e-4 to 5e-4, and PEFT's method comparison trains IA3
# at 5e-3 (T-Few: 3e-3).
DEFAULT_LR = {"lora": 5e-4, "dora": 5e-4, "adalora": 5e-4, "loha": 5e-4, "lokr": 5e-4, "vera": 5e-3, "ia3": 5e-3,
              "boft": 5e-4, "full": 5e-5, "mps": 5e-4}
# The options each method reads besides the common ones (the others are an error when given)
_USES = {
    "lora": {"r", "alpha", "rslora", "dropout", "budget", "init_adapter", "init_scale", "start_step", "squeeze_to",
             "squeeze_steps"},
    "dora": {"r", "alpha", "rslora", "dropout", "budget"},
    "adalora": {"r", "alpha", "dropout", "budget"},
    "loha": {"r", "alpha", "budget"},
    "lokr": {"r", "alpha", "budget", "lokr_factor"},
    "vera": {"r", "dropout", "budget"},
    "ia3": {"budget"},
    "boft": {"block_size", "dropout", "budget"},
    # full accepts r, alpha, rslora and dropout without reading them, and mps rslora and dropout,
    # as they always have (earlier runs' callers pass them)
    "full": {"r", "alpha", "rslora", "dropout"},
    "mps": {"r", "alpha", "rslora", "dropout", "chi", "d1", "budget"},
}


@dataclass
class FinetuneConfig:
    """Everything that determines a fine-tune (same config and machine → same weights)."""

    out: str
    model: str = "minilm"  # minilm, smollm2, or a local transformers model folder
    method: str = "lora"  # one of METHODS: a PEFT method, full, or mps (MPS Adaptation, lab/finetune/mps.py)
    texts: str | None = None  # a text file instead of the standard-library docstrings
    r: int | None = None  # rank (AdaLoRA: target_r; VeRA: the shared projections' rank); None: 8, or picked by budget
    alpha: float | None = None  # None: 16 (methods with an α/r scale)
    rslora: bool = False  # scale α/√r instead of α/r (Kalajdzievski, 2023; lora and dora)
    budget: int | None = None  # trainable parameters in total: picks r (boft: block_size) by counting the real model
    block_size: int | None = None  # BOFT block size; None: 4, or picked by budget
    lokr_factor: int | None = None  # LoKr decompose_factor (the Kronecker split); None: PEFT's balanced one (-1), or chosen by budget
    chi: int | None = None  # MPS bond dimension χ (method mps); None: 8
    d1: int | None = None  # MPS input split d_in = d1·d2 (method mps); None: the most balanced on the probe's chain
    init_adapter: str | None = None  # a PEFT adapter folder to start from (lora: training continues from its factors)
    # With init_adapter: train at this scale s (PEFT's α/r) instead of the adapter's own, its factors
    # divided by √s so that s·B·A is unchanged (Cont-Squeeze continues at its source run's α/r)
    init_scale: float | None = None
    # With init_adapter: the step the run continues from (its first start_step batches are skipped and
    # its steps are numbered start_step + 1, …; checkpoint-{start_step} is the adapter as loaded)
    start_step: int = 0
    # In-Squeeze (LoRA-Squeeze's in-tuning rank annealing): truncate the update by its SVD from r
    # towards squeeze_to on a linear schedule over steps squeeze_steps = (S1, S2) (lab/finetune/insqueeze.py)
    squeeze_to: int | None = None
    squeeze_steps: tuple[int, int] | None = None
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
        given = {"r": self.r is not None, "alpha": self.alpha is not None, "rslora": self.rslora, "dropout": self.dropout != 0.0,
                 "budget": self.budget is not None, "block_size": self.block_size is not None,
                 "lokr_factor": self.lokr_factor is not None, "chi": self.chi is not None, "d1": self.d1 is not None,
                 "init_adapter": self.init_adapter is not None, "init_scale": self.init_scale is not None,
                 "start_step": self.start_step != 0, "squeeze_to": self.squeeze_to is not None,
                 "squeeze_steps": self.squeeze_steps is not None}
        unused = [name for name, set_ in given.items() if set_ and name not in _USES[self.method]]
        if "init_adapter" in unused:
            raise InputError(f"an initial adapter continues LoRA training only (got --method {self.method})")
        if unused:
            name = unused[0].replace("_", "-")
            raise InputError(f"--{name} does not apply to --method {self.method} (it reads: {', '.join('--' + u.replace('_', '-') for u in sorted(_USES[self.method])) or 'none of the size options'})")
        if self.budget is not None and (self.r is not None or self.block_size is not None):
            raise InputError(f"--budget picks {'--block-size' if self.method == 'boft' else '--r'} itself; pass one or the other")
        if self.budget is not None and self.init_adapter is not None:
            raise InputError("--budget cannot resize an initial adapter; its rank is fixed by its files")
        for name in ("steps", "batch_size", "save_every", "max_length", "r", "max_docs", "threads", "budget", "block_size", "chi"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if self.batch_size < 2:
            raise InputError("--batch-size must be at least 2 (in-batch negatives need a second example)")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"--dropout must be in [0, 1) (got {self.dropout})")
        if self.lokr_factor is not None and not (self.lokr_factor == -1 or self.lokr_factor >= 1):
            raise InputError(f"--lokr-factor must be -1 (balanced) or at least 1 (got {self.lokr_factor})")
        if self.lr is not None and not self.lr > 0:
            raise InputError(f"--lr must be positive (got {self.lr})")
        if (self.init_scale is not None or self.start_step) and self.init_adapter is None:
            raise InputError("an initial scale or start step continues an initial adapter (init_adapter); none given")
        if self.init_scale is not None and not self.init_scale > 0:
            raise InputError(f"the initial scale must be positive (got {self.init_scale})")
        if self.start_step < 0:
            raise InputError(f"the start step must be at least 0 (got {self.start_step})")
        self._validate_squeeze()

    def _validate_squeeze(self) -> None:
        if self.squeeze_steps is not None and self.squeeze_to is None:
            raise InputError("--squeeze-steps sets when In-Squeeze truncates; pass --squeeze-to K as well")
        if self.squeeze_to is None:
            return
        if self.init_adapter is not None or self.budget is not None:
            raise InputError("--squeeze-to anneals the rank from --r; it takes neither an initial adapter nor --budget")
        r = self.r if self.r is not None else 8
        if not 1 <= self.squeeze_to < r:
            raise InputError(f"--squeeze-to {self.squeeze_to} must be at least 1 and below --r {r}")
        s1, s2 = self.squeeze_window
        if not 1 <= s1 <= s2 <= self.steps:
            raise InputError(f"--squeeze-steps {s1}:{s2} must satisfy 1 ≤ S1 ≤ S2 ≤ --steps {self.steps}")

    @property
    def squeeze_window(self) -> tuple[int, int]:
        """In-Squeeze's (S1, S2): the given one, else the middle half of the run (steps/4 to 3·steps/4)."""
        if self.squeeze_steps is not None:
            return int(self.squeeze_steps[0]), int(self.squeeze_steps[1])
        return max(1, round(self.steps / 4)), max(1, round(3 * self.steps / 4))

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]
