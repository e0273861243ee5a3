"""Held-out loss of merged adapters, of the adapters they merge and of the base: the ``merge_eval`` table.

A merge is judged on what LoRA-LEGO claims it keeps (several tasks in one adapter), not only on
‖M − T‖_F, where the truncated SVD wins by Eckart–Young. For every text set given with
``--eval-texts`` the first N windows of L tokens are made exactly as the activation probes make
them (:func:`lab.probes.windows.make_windows`: texts tokenized without special tokens, joined by
the separator token, cut from offset 0), and every model gets the loss of the objective its base
is fine-tuned with (:mod:`lab.finetune.objectives`), so the numbers are the fine-tunes' own loss
on held-out text:

* ``causal-lm`` (a base saved with a language-modelling head): the mean next-token cross-entropy
  over the windows, −(1/(N·(L−1)))·Σ_w Σ_{t<L} log p(x_{t+1} | x_≤t), in float64 from the logits
  (what ``model(input_ids, labels=input_ids).loss`` computes).
* ``contrastive`` (an encoder without LM head, e.g. all-MiniLM-L6-v2): InfoNCE with in-batch
  negatives at τ = 0.05 (the fine-tuner's default), window w's first ⌊L/2⌋ tokens the anchor and
  the rest its positive, each wrapped in the tokenizer's special tokens ([CLS] … [SEP]) as the
  fine-tuner's tokenizer call does, mean-pooled over all their tokens; the N windows are one batch,
  −(1/N)·Σ_w log softmax_v(cos(a_w, p_v)/τ)_w. It needs N ≥ 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from lab.errors import InputError

TEMPERATURE = 0.05


@dataclass(frozen=True)
class EvalSet:
    """One held-out text set: its name (the file's stem), path and token windows."""

    name: str
    path: Path
    windows: list


def objective_of(base: Path) -> str:
    """The fine-tuning objective of ``base`` (``causal-lm`` or ``contrastive``), as the fine-tuner decides it."""
    from lab.finetune.models import resolve_base

    return resolve_base(str(base)).objective


def eval_sets(base: Path, texts: Sequence[str | Path], seq_len: int, windows: int) -> list[EvalSet]:
    """The windows of every text set (InputError before anything is written when one is too short)."""
    from lab.merge.hidden import windows_for

    if objective_of(base) != "causal-lm" and windows < 2:
        raise InputError(f"--windows {windows}: the contrastive loss of {base} needs at least 2 windows (in-batch negatives)")
    paths = [Path(t) for t in texts]
    names = [p.stem for p in paths]
    if len(set(names)) < len(names):
        names = [f"{i}:{n}" for i, n in enumerate(names)]
    return [EvalSet(n, p, windows_for(Path(base), p, seq_len, windows)) for n, p in zip(names, paths)]


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text ([CLS] and [SEP] for BERT), as its own call adds them."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i:i + len(plain)] == plain:
            return full[:i], full[i + len(plain):]
    return [], []


def window_loss(model, tokenizer, windows, objective: str, temperature: float = TEMPERATURE) -> float:
    """The objective's loss of ``model`` on ``windows`` (float64; see the module docstring)."""
    import torch
    import torch.nn.functional as F

    from lab.finetune.objectives import info_nce, mean_pool

    with torch.no_grad():
        if objective == "causal-lm":
            ids = torch.tensor([list(w.ids) for w in windows])
            logits = model(input_ids=ids).logits.double()
            return float(F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)))
        half = windows[0].seq_len // 2
        prefix, suffix = special_tokens(tokenizer)

        def embed(parts):
            ids = torch.tensor([prefix + list(p) + suffix for p in parts])
            mask = torch.ones_like(ids)
            return mean_pool(model(input_ids=ids, attention_mask=mask).last_hidden_state.double(), mask)

        a = embed([w.ids[:half] for w in windows])
        p = embed([w.ids[half:] for w in windows])
        return float(info_nce(a, p, temperature))


def losses(base: Path, models: Sequence[tuple[str, Path | None]], sets: Sequence[EvalSet],
           full: bool = False) -> dict[tuple[str, str], float]:
    """{(model name, set name): loss} for each (name, adapter folder) in ``models`` (None: the base itself);
    ``full``: the folders hold full models (a merge of full fine-tunes), not adapters."""
    from lab.engine.subjects import ModelSubject
    from lab.probes.windows import load_model, load_tokenizer

    objective = objective_of(base)
    tokenizer = load_tokenizer(ModelSubject("base", None, Path(base), "base"))
    out = {}
    for name, path in models:
        subject = (ModelSubject(name, None, Path(base), "base") if path is None
                   else ModelSubject(name, None, Path(path), "full" if full else "adapter", base=Path(base)))
        model = load_model(subject)
        for s in sets:
            out[(name, s.name)] = window_loss(model, tokenizer, s.windows, objective)
    return out


def eval_rows(run: str, merged: str, method: str, base: Path, inputs: Sequence[tuple[str, Path]], sets: Sequence[EvalSet],
              merged_path: Path, full: bool = False) -> list[dict]:
    """The ``merge_eval`` rows of one merged adapter (``full``: model): it, every input and the base, on every text set."""
    objective = objective_of(base)
    models = [(merged, merged_path), *inputs, ("base", None)]
    kinds = {merged: "merged", "base": "base", **{n: "input" for n, _ in inputs}}
    got = losses(base, models, sets, full=full)
    rows = []
    for s in sets:
        base_loss = got[("base", s.name)]
        for name, _ in models:
            loss = got[(name, s.name)]
            rows.append({"run": run, "checkpoint": name, "step": None, "module": None, "layer": None, "role": None,
                         "merged": merged, "method": method, "kind": kinds[name], "texts": s.name,
                         "seq_len": s.windows[0].seq_len, "windows": len(s.windows), "objective": objective,
                         "loss": loss, "base_loss": base_loss, "loss_change": loss - base_loss})
    return rows


def write_eval_table(results: Path, run: str, rows: list[dict]) -> Path:
    """Add the rows to RESULTS/RUN/merge_eval.parquet (the rows of the same merged adapter replaced)."""
    from lab.store.writer import upsert_table

    return upsert_table(results, run, "merge_eval", rows, "merged")[0]
