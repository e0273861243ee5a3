"""The fine-tuning loop: LoRA (PEFT) or full fine-tuning of chosen modules, with checkpoints in
the standard formats so that ``lab analyze`` reads them like anyone's.

Output folder::

    OUT/finetune_config.json   the exact configuration, the base model's path, corpus digest, versions
    OUT/loss.jsonl             one line per step: step, loss, lr, seconds since start
    OUT/checkpoint-N/          a PEFT adapter folder (LoRA) or a full safetensors model (full)
    OUT/COMPLETE               written last: a run without it is unfinished

(The configuration is not called ``config.json`` so that the folder is never mistaken for a
transformers model folder.)
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from lab.errors import InputError, MatchError, RunExistsError
from lab.finetune.corpus import Document, corpus_digest, read_texts, stdlib_docstrings
from lab.finetune.models import BaseModel, load_model, resolve_base
from lab.finetune.objectives import Batches, loss as objective_loss

CONFIG_FILE = "finetune_config.json"
LOSS_FILE = "loss.jsonl"
COMPLETE_FILE = "COMPLETE"
METHODS = ("lora", "full")
# Adam learning rates that move the weights visibly within a few hundred steps without
# diverging: LoRA's factors tolerate a larger step than the pretrained weights themselves.
DEFAULT_LR = {"lora": 5e-4, "full": 5e-5}


@dataclass
class FinetuneConfig:
    """Everything that determines a fine-tune (same config and machine → same weights)."""

    out: str
    model: str = "minilm"  # minilm, smollm2, or a local transformers model folder
    method: str = "lora"  # lora or full
    texts: str | None = None  # a text file instead of the standard-library docstrings
    r: int = 8
    alpha: float = 16.0
    rslora: bool = False  # scale α/√r instead of α/r (Kalajdzievski, 2023)
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
        if self.lr is not None and not self.lr > 0:
            raise InputError(f"--lr must be positive (got {self.lr})")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.method]


def load_corpus(config: FinetuneConfig) -> list[Document]:
    """The documents a config trains on: its ``texts`` file, or the standard-library docstrings."""
    return read_texts(config.texts) if config.texts else stdlib_docstrings(limit=config.max_docs)


def is_complete(out: str | Path, config: FinetuneConfig | None = None) -> bool:
    """Whether ``out`` holds a finished fine-tune (its ``COMPLETE`` marker), of ``config`` when given
    (same options; the output path itself may differ)."""
    out = Path(out)
    if not (out / COMPLETE_FILE).is_file() or not (out / CONFIG_FILE).is_file():
        return False
    if config is None:
        return True
    try:
        saved = json.loads((out / CONFIG_FILE).read_text())["options"]
    except (json.JSONDecodeError, KeyError):
        return False
    mine = {k: v for k, v in _options(config).items() if k != "out"}
    return {k: v for k, v in saved.items() if k != "out"} == mine


def finetune(config: FinetuneConfig, *, overwrite: bool = False, on_step: Callable[[int, float], None] | None = None) -> Path:
    """Fine-tune the base model per ``config`` and return the output folder.

    ``on_step(step, loss)`` is called after every optimiser step (progress bars hang off it).
    An existing output folder is an error unless ``overwrite``; a run is marked complete only
    after its last checkpoint is written.
    """
    config.validate()
    out = Path(config.out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RunExistsError(f"{out}: output folder exists and is not empty; pass --overwrite or choose another --out")
        if not (out / CONFIG_FILE).is_file():  # --overwrite replaces a fine-tune, never an arbitrary folder
            raise RunExistsError(f"{out}: not a lab finetune output (no {CONFIG_FILE}); refusing to delete it, choose another --out")
        shutil.rmtree(out)
    base = resolve_base(config.model)
    docs = load_corpus(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(config, base, docs, out, on_step)
    finally:
        torch.set_num_threads(threads)  # a library call must not leave the process's settings changed


def _train(config: FinetuneConfig, base: BaseModel, docs: list[Document], out: Path, on_step) -> Path:
    torch.manual_seed(config.seed)  # LoRA's A initialisation and dropout draw from torch's global generator
    model, tokenizer = load_model(base)
    model, trained = _prepare(model, base, config)
    batches = iter(Batches(docs, tokenizer, base.objective, config.batch_size, config.max_length, config.seed))

    out.mkdir(parents=True, exist_ok=True)
    _write_config(out, config, base, docs, trained)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    model.train()
    start = time.perf_counter()
    with open(out / LOSS_FILE, "w") as log:
        for step in range(1, config.steps + 1):
            value = objective_loss(model, next(batches), config.temperature)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            loss_value = float(value.detach())
            log.write(json.dumps({"step": step, "loss": loss_value, "lr": config.learning_rate, "seconds": round(time.perf_counter() - start, 3)}) + "\n")
            log.flush()
            if step % config.save_every == 0 or step == config.steps:
                _save_checkpoint(model, out / f"checkpoint-{step}", config)
            if on_step is not None:
                on_step(step, loss_value)
    (out / COMPLETE_FILE).write_text(json.dumps({"steps": config.steps, "seconds": round(time.perf_counter() - start, 3)}) + "\n")
    return out


def _prepare(model, base: BaseModel, config: FinetuneConfig):
    """The model to train and the names of the trained modules (LoRA-wrapped or unfrozen)."""
    targets = list(config.target_modules or base.default_targets)
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.r,
            lora_alpha=config.alpha,
            use_rslora=config.rslora,
            lora_dropout=config.dropout,
            target_modules="all-linear" if targets == ["all"] else targets,
            # all-linear leaves out a causal LM's output head; an encoder has none, and its
            # pooler is not part of the sentence embedding.
            exclude_modules=["pooler.dense"] if base.objective == "contrastive" and targets == ["all"] else None,
        )
        try:
            model = get_peft_model(model, lora)
        except ValueError as e:
            raise MatchError(f"{base.path}: --target-modules {','.join(targets)} match no module of this model ({str(e).splitlines()[0]})") from None
        names = sorted(n.removeprefix("base_model.model.") for n, m in model.named_modules() if hasattr(m, "lora_A") and n)
        return model, names
    model.requires_grad_(False)
    names = []
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.nn.Parameter) or not name:
            continue
        if targets == ["all"] or any(name == t or name.endswith("." + t) for t in targets):
            weight.requires_grad_(True)
            names.append(name)
    if not names:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise MatchError(f"{base.path}: --target-modules {','.join(targets)} match no module; this model's linear layers are named {', '.join(linear)}")
    return model, names


def _save_checkpoint(model, path: Path, config: FinetuneConfig) -> None:
    # LoRA: a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) whose
    # base_model_name_or_path is the base folder; full: the whole model as safetensors.
    model.save_pretrained(path)


def _options(config: FinetuneConfig) -> dict:
    opts = asdict(config)
    opts["lr"] = config.learning_rate
    return json.loads(json.dumps(opts))  # tuples → lists, as they come back from the file


def _write_config(out: Path, config: FinetuneConfig, base: BaseModel, docs: list[Document], trained: list[str]) -> None:
    import peft
    import transformers

    record = {
        "options": _options(config),
        "base_model": str(base.path),
        "objective": base.objective,
        "model_type": base.model_type,
        "trained_modules": trained,
        "corpus": {"source": config.texts or "python-stdlib-docstrings", "documents": len(docs), "sha256": corpus_digest(docs)},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "analyze_with": f"lab analyze {out} --base {base.path}",
    }
    (out / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")

