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
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from lab.errors import InputError, MatchError, RunExistsError
from lab.finetune.config import (  # noqa: F401  (re-exported: the folder layout's names)
    COMPLETE_FILE, CONFIG_FILE, DEFAULT_LR, LOSS_FILE, METHODS, FinetuneConfig,
)
from lab.finetune.corpus import Document, corpus_digest, read_texts, stdlib_docstrings
from lab.finetune.models import BaseModel, load_model, resolve_base
from lab.finetune.objectives import Batches, loss as objective_loss

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
                _save_checkpoint(model, out / f"checkpoint-{step}", config, base)
            if on_step is not None:
                on_step(step, loss_value)
    (out / COMPLETE_FILE).write_text(json.dumps({"steps": config.steps, "seconds": round(time.perf_counter() - start, 3)}) + "\n")
    return out


def _prepare(model, base: BaseModel, config: FinetuneConfig):
    """The model to train and the names of the trained modules (LoRA-wrapped or unfrozen)."""
    targets = list(config.target_modules or base.default_targets)
    if config.method == "mps":
        from lab.finetune.mps import wrap_mps

        names = wrap_mps(model, targets, config.r, config.chi, config.alpha, config.d1, where=str(base.path))
        return model, names
    if config.method == "lora" and config.init_adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, config.init_adapter, is_trainable=True)
        names = sorted(n.removeprefix("base_model.model.") for n, m in model.named_modules() if hasattr(m, "lora_A") and n)
        return model, names
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


def _save_checkpoint(model, path: Path, config: FinetuneConfig, base: BaseModel) -> None:
    # LoRA: a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) whose
    # base_model_name_or_path is the base folder; full: the whole model as safetensors;
    # MPS: mps_adapter_config.json + mps_adapter_model.safetensors (lab/finetune/mps.py).
    if config.method == "mps":
        from lab.finetune.mps import save_mps

        save_mps(model, path, base_path=str(base.path), targets=list(config.target_modules or base.default_targets))
        return
    model.save_pretrained(path)


def _options(config: FinetuneConfig) -> dict:
    opts = asdict(config)
    opts["lr"] = config.learning_rate
    # options a run of another method never reads stay out, so earlier runs' records still match
    for name in ("chi", "d1"):
        if config.method != "mps":
            opts.pop(name)
    if config.init_adapter is None:
        opts.pop("init_adapter")
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

