"""The fine-tuning loop: a PEFT method (lora, dora, adalora, loha, lokr, vera, ia3, boft; see
lab/finetune/methods.py), MPS Adaptation or full fine-tuning of chosen modules, with checkpoints in
the standard formats so that ``lab analyze`` reads them like anyone's.

Output folder::

    OUT/finetune_config.json   the exact configuration, the base model's path, corpus digest, versions
    OUT/loss.jsonl             one line per step: step, loss, lr, seconds since start
    OUT/checkpoint-N/          a PEFT adapter folder (PEFT's save_pretrained), an MPS adapter folder,
                               or a full safetensors model (full)
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


def finetune(config: FinetuneConfig, *, overwrite: bool = False, on_step: Callable[[int, float], None] | None = None,
             on_pick: Callable[[str], None] | None = None) -> Path:
    """Fine-tune the base model per ``config`` and return the output folder.

    ``on_step(step, loss)`` is called after every optimiser step (progress bars hang off it);
    ``on_pick(line)`` with one line saying what ``config.budget`` picked (also recorded under
    ``"budget"`` in ``finetune_config.json``). An existing output folder is an error unless
    ``overwrite``; a run is marked complete only after its last checkpoint is written.

    >>> finetune(FinetuneConfig(out="runs/vera", method="vera", budget=20_000, steps=40))  # doctest: +SKIP
    """
    from lab.finetune.methods import pick_sizes

    config.validate()
    out = Path(config.out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise RunExistsError(f"{out}: output folder exists and is not empty; pass --overwrite or choose another --out")
        if not (out / CONFIG_FILE).is_file():  # --overwrite replaces a fine-tune, never an arbitrary folder
            raise RunExistsError(f"{out}: not a lab finetune output (no {CONFIG_FILE}); refusing to delete it, choose another --out")
        shutil.rmtree(out)
    base = resolve_base(config.model)
    sizes, pick = pick_sizes(config, base)  # before the corpus and the model: a budget no size meets fails fast
    if pick is not None and on_pick is not None:
        on_pick(pick.line())
    docs = load_corpus(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(config, base, docs, out, on_step, sizes, pick)
    finally:
        torch.set_num_threads(threads)  # a library call must not leave the process's settings changed


def _train(config: FinetuneConfig, base: BaseModel, docs: list[Document], out: Path, on_step, sizes=None, pick=None) -> Path:
    from lab.finetune.methods import Sizes

    torch.manual_seed(config.seed)  # adapter initialisations and dropout draw from torch's global generator
    model, tokenizer = load_model(base)
    model, trained = _prepare(model, base, config, sizes or Sizes())
    batches = iter(Batches(docs, tokenizer, base.objective, config.batch_size, config.max_length, config.seed))
    for _ in range(config.start_step):  # a continued run draws the batches its source run would have drawn next
        next(batches)
    drops = _squeeze_schedule(config)

    out.mkdir(parents=True, exist_ok=True)
    _write_config(out, config, base, docs, trained, model, pick, drops)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    adalora = config.method == "adalora"
    if config.init_adapter is not None:  # the start of a continued run, as loaded (and rescaled)
        _save_checkpoint(model, out / f"checkpoint-{config.start_step}", config, base)
    model.train()
    start = time.perf_counter()
    last = config.start_step + config.steps
    with open(out / LOSS_FILE, "w") as log:
        for step in range(config.start_step + 1, last + 1):
            value = objective_loss(model, next(batches), config.temperature)
            penalty = _adalora_orthogonality(model) if adalora else None
            optimizer.zero_grad(set_to_none=True)
            (value + penalty if penalty is not None else value).backward()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            if adalora:
                # importance scores from this step's gradients, then the budget's mask (PEFT's
                # order: after optimizer.step(), before the gradients are cleared)
                model.base_model.update_and_allocate(step)
            loss_value = float(value.detach())
            row = {"step": step, "loss": loss_value, "lr": config.learning_rate, "seconds": round(time.perf_counter() - start, 3)}
            if penalty is not None:  # the objective's loss stays comparable across methods; the penalty apart
                row["orth_penalty"] = float(penalty.detach())
            if drops is not None:
                from lab.finetune import insqueeze

                rank = insqueeze.rank_at(drops, _rank(config), step)
                if rank < insqueeze.rank_at(drops, _rank(config), step - 1):
                    # In-Squeeze: truncate after the step; AdamW's moments belong to the old factors, so it restarts
                    insqueeze.truncate(model, rank)
                    params = [p for p in model.parameters() if p.requires_grad]
                    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
                row["rank"] = rank  # the rank the step ends at (the loss is the step's, before any truncation)
            log.write(json.dumps(row) + "\n")
            log.flush()
            if (step - config.start_step) % config.save_every == 0 or step == last:
                _save_checkpoint(model, out / f"checkpoint-{step}", config, base)
            if on_step is not None:
                on_step(step - config.start_step, loss_value)
    (out / COMPLETE_FILE).write_text(json.dumps({"steps": config.steps, "seconds": round(time.perf_counter() - start, 3)}) + "\n")
    return out


def _squeeze_schedule(config: FinetuneConfig) -> list[tuple[int, int]] | None:
    """In-Squeeze's (step, rank) drops, or None for a run at one rank."""
    if config.squeeze_to is None:
        return None
    from lab.finetune import insqueeze

    return insqueeze.schedule(_rank(config), config.squeeze_to, *config.squeeze_window)


def _rank(config: FinetuneConfig) -> int:
    from lab.finetune.methods import DEFAULT_R

    return config.r if config.r is not None else DEFAULT_R


def _prepare(model, base: BaseModel, config: FinetuneConfig, sizes):
    """The model to train and the names of the trained modules (adapted or unfrozen)."""
    from lab.finetune.methods import adapt, adapted_modules

    targets = list(config.target_modules or base.default_targets)
    if config.method == "lora" and config.init_adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, config.init_adapter, is_trainable=True)
        if config.init_scale is not None:
            _rescale(model, config.init_scale)
        return model, adapted_modules(model)
    if config.method != "full":
        model = adapt(model, config, base, sizes)
        return model, adapted_modules(model)
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


def _rescale(model, scale: float) -> None:
    """Train a loaded LoRA adapter at PEFT scale ``scale``: every layer's factors divided by √(scale/s)
    (s its own scale), so scale·B·A is unchanged; the config's α per module set to keep that scale
    when the checkpoints are loaded (alpha_pattern over the modules' full names)."""
    import math
    import re

    from peft.tuners.lora import LoraLayer

    config = model.peft_config["default"]
    pattern = {}
    with torch.no_grad():
        for name, m in model.named_modules():
            if not isinstance(m, LoraLayer) or "default" not in m.scaling:
                continue
            if "default" in m.lora_A and isinstance(m.lora_A["default"], torch.nn.Linear):
                factors = (m.lora_A["default"].weight, m.lora_B["default"].weight)
            elif "default" in m.lora_embedding_A:
                factors = (m.lora_embedding_A["default"], m.lora_embedding_B["default"])
            else:
                raise InputError(f"{name}: only linear and embedding LoRA layers can be trained at another scale")
            if m.use_dora.get("default", False):
                raise InputError(f"{name}: a DoRA layer's scale cannot be changed without changing its update")
            root = math.sqrt(scale / m.scaling["default"])
            for f in factors:
                f.div_(root)
            m.scaling["default"] = scale
            r = m.r["default"]
            pattern[re.escape(name.removeprefix("base_model.model."))] = scale * (math.sqrt(r) if config.use_rslora else r)
    config.lora_alpha = scale * (math.sqrt(config.r) if config.use_rslora else config.r)
    config.alpha_pattern = {k: v for k, v in pattern.items() if v != config.lora_alpha}


def _adalora_orthogonality(model) -> torch.Tensor:
    """AdaLoRA's regulariser R(P, Q) = mean over its factors of ‖PᵀP − I‖_F and ‖QQᵀ − I‖_F, times
    orth_reg_weight (Zhang et al., 2023, eq. 4). PEFT adds it only to a model output's own ``loss``
    and only through task-typed wrappers (AdaLoraModel.forward); the lab's objectives compute the
    loss outside the model, so the same sum is added here."""
    weight = model.peft_config["default"].orth_reg_weight
    terms = []
    for name, p in model.named_parameters():
        if ("lora_A" in name or "lora_B" in name) and "default" in name:
            cov = p @ p.T if "lora_A" in name else p.T @ p
            terms.append(torch.linalg.norm(cov - torch.eye(*cov.shape, dtype=cov.dtype), ord="fro"))
    return weight * torch.stack(terms).mean() if terms else torch.zeros(())


def _save_checkpoint(model, path: Path, config: FinetuneConfig, base: BaseModel) -> None:
    # PEFT methods: PEFT's adapter folder (adapter_config.json + adapter_model.safetensors) whose
    # base_model_name_or_path is the base folder (AdaLoRA's holds only the ranks its mask kept,
    # with the rank_pattern in its config); full: the whole model as safetensors;
    # MPS: mps_adapter_config.json + mps_adapter_model.safetensors (lab/finetune/mps.py).
    if config.method == "mps":
        from lab.finetune.mps import save_mps

        save_mps(model, path, base_path=str(base.path), targets=list(config.target_modules or base.default_targets))
        return
    import warnings

    with warnings.catch_warnings():
        # AdaLoRA may prune every rank of a module (its budget is shared); PEFT then saves 0-rank
        # factors, loads them fine, and warns that they look like unsharded DeepSpeed tensors
        warnings.filterwarnings("ignore", message=r".*tensor\(s\) have invalid shape")
        model.save_pretrained(path)


def _options(config: FinetuneConfig) -> dict:
    from lab.finetune.methods import DEFAULT_ALPHA, DEFAULT_CHI, DEFAULT_R

    opts = asdict(config)
    opts["lr"] = config.learning_rate
    # defaults written out as values, as earlier runs recorded them (a budget leaves r to the pick)
    uses = _uses(config.method)
    if opts["r"] is None and config.budget is None and "r" in uses:
        opts["r"] = DEFAULT_R
    if opts["alpha"] is None and "alpha" in uses:
        opts["alpha"] = DEFAULT_ALPHA
    if opts["chi"] is None and config.method == "mps":
        opts["chi"] = DEFAULT_CHI
    # options a run of another method never reads stay out, so earlier runs' records still match
    for name in ("chi", "d1"):
        if config.method != "mps":
            opts.pop(name)
    for name in ("r", "alpha", "rslora"):
        if name not in uses:
            opts.pop(name)
    for name in ("init_adapter", "budget", "block_size", "lokr_factor", "init_scale", "squeeze_to", "squeeze_steps"):
        if opts[name] is None:
            opts.pop(name)
    if not opts["start_step"]:
        opts.pop("start_step")
    return json.loads(json.dumps(opts))  # tuples → lists, as they come back from the file


def _uses(method: str) -> set[str]:
    from lab.finetune.config import _USES

    return _USES[method]


def _write_config(out: Path, config: FinetuneConfig, base: BaseModel, docs: list[Document], trained: list[str],
                  model=None, pick=None, drops=None) -> None:
    import peft
    import transformers

    from lab.finetune.methods import trainable_count

    record = {
        "method": config.method,
        "options": _options(config),
        "base_model": str(base.path),
        "objective": base.objective,
        "model_type": base.model_type,
        "trained_modules": trained,
        "trainable_parameters": trainable_count(model) if model is not None else None,
        "corpus": {"source": config.texts or "python-stdlib-docstrings", "documents": len(docs), "sha256": corpus_digest(docs)},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "analyze_with": f"lab analyze {out} --base {base.path}",
    }
    peft_configs = getattr(model, "peft_config", None)
    if peft_configs and "default" in peft_configs:  # the PEFT config's arguments, as its adapter_config.json will hold them
        record["peft_config"] = json.loads(json.dumps(peft_configs["default"].to_dict(), default=_jsonable))
    if pick is not None:
        record["budget"] = pick.record()
    if drops is not None:
        from lab.finetune import insqueeze
        from lab.finetune.methods import DEFAULT_ALPHA

        record["in_squeeze"] = insqueeze.record(config, _rank(config), config.alpha if config.alpha is not None else DEFAULT_ALPHA, drops)
    (out / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")


def _jsonable(value):
    return sorted(value) if isinstance(value, (set, frozenset)) else str(value)

