"""What fine-tuning cost the model: how far its predictions and hidden states moved from the base's.

On the windows of the activation probes (:mod:`lab.probes.windows`), for each checkpoint against the
base, on two text sets: ``texts`` (the run's ``--texts``, normally the fine-tuning data) and
``reference`` (the ``reference_texts`` option: anything else, where a change is what was forgotten):

* **KL(p_base ‖ p_tuned)** per predicted position, in nats, averaged over positions and windows:
  Σ_v p_base(v)·(ln p_base(v) − ln p_tuned(v)), both log-softmaxes taken in float64 from the models'
  float32 logits. For a decoder (a causal-LM head) the positions are the next-token predictions
  0 … L−2 of each window; for an encoder with a masked-LM head, a seeded fraction of each window's
  positions (``mask_fraction``, the same for the base and every checkpoint) is replaced by the mask
  token in one forward pass and the distributions are those at the masked positions. A model
  without a language-modelling head (the packaged MiniLM is a bare ``BertModel``) has no output
  distribution: its row says so (``objective`` = none, KL and losses empty) and only the
  hidden-state distances are reported.
* **loss before and after**: the mean cross-entropy (nats per predicted token) of the base and of
  the tuned model at the same positions (next token; the original token at a masked position).
* **hidden states**, per entry of transformers' ``output_hidden_states`` (0: the embeddings' output,
  k: block k−1's output, the last as the model returns it, after the final norm in LLaMA-style
  models): the mean over positions of the cosine distance 1 − cos(h_base, h_tuned), computed as
  ½‖h_base/‖h_base‖ − h_tuned/‖h_tuned‖‖² (the same number, without the cancellation of 1 − cos
  near 0, and exactly 0 for identical states), and of ‖h_tuned − h_base‖ / ‖h_base‖.

Intervals are percentile bootstraps of the mean over windows (seeded by the run's seed). The base
runs once per run (:func:`_prepare`): its logits and hidden states are written to float32 files
(what the model computed, so nothing is rounded) that every checkpoint's unit maps from disk and
reads one window at a time; only one window's outputs of one model are in memory at a time.

    >>> kl = (np.exp(lp_base) * (lp_base - lp_tuned)).sum(-1)   # per position, lp = log-softmax(logits)
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lab.errors import InputError
from lab.probes.no_hair import bootstrap_interval
from lab.probes.registry import Probe, ProbeContext, Rows, field_help, register
from lab.probes.windows import (Window, check_window_options, load_model, load_tokenizer, make_windows, seq_len_field,
                                window_rows, windows_field)

NEXT_TOKEN, MASKED_TOKEN, NONE = "next_token", "masked_token", "none"
TEXT_SETS = ("texts", "reference")


@dataclass(frozen=True)
class ForgettingOptions:
    """Options of the forgetting probe."""

    seq_len: tuple[int, ...] = seq_len_field()
    windows: int = windows_field()
    reference_texts: str = field_help("a texts file the model was not fine-tuned on (one text per line, or .jsonl with "
                                      "\"text\"): the 'reference' text set, where a change is what was forgotten; empty: "
                                      "only the run's --texts", default="")
    mask_fraction: float = field_help("encoders with a masked-LM head: the fraction of each window's positions replaced by "
                                      "the mask token (at least one; seeded by the run's seed, the same positions for the "
                                      "base and every checkpoint)", default=0.15)
    bootstrap: int = field_help("bootstrap resamples of the windows behind each interval", default=1000)
    cache_dir: str = field_help("folder for the base's logits and hidden states (float32, read by every checkpoint's "
                                "unit; on a Dask cluster every worker must see it); empty: the system's temporary folder",
                                default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "seq_len", check_window_options(self.seq_len, self.windows))
        if not 0.0 < self.mask_fraction <= 1.0:
            raise ValueError(f"mask_fraction={self.mask_fraction}: a fraction in (0, 1]")
        if self.bootstrap < 1:
            raise ValueError(f"bootstrap={self.bootstrap}: at least one resample")
        if self.reference_texts and not Path(self.reference_texts).is_file():  # before any model is loaded
            raise ValueError(f"reference_texts={self.reference_texts}: no such text file; give a UTF-8 file with one "
                             "text per line (or .jsonl with \"text\")")


# ---- pure functions -------------------------------------------------------------------------------

def log_softmax(logits: np.ndarray) -> np.ndarray:
    """ln softmax over the last axis, in float64."""
    x = np.asarray(logits, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


BLOCK_ENTRIES = 1 << 22  # float64 entries per block of rows: a 128k vocabulary is worked on 32 positions at a time


def _row_blocks(n_rows: int, width: int):
    step = max(1, BLOCK_ENTRIES // max(width, 1))
    return (slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step))


def kl_divergence(logits_p: np.ndarray, logits_q: np.ndarray) -> np.ndarray:
    """KL(p ‖ q) = Σ_v p(v)·(ln p(v) − ln q(v)) in nats for each row of two (positions, vocabulary) arrays, p and q
    the softmaxes of the rows, in float64 (in blocks of rows, so a large vocabulary's float64 copies stay small)."""
    out = np.empty(logits_p.shape[0])
    for b in _row_blocks(logits_p.shape[0], logits_p.shape[-1]):
        lp, lq = log_softmax(logits_p[b]), log_softmax(logits_q[b])
        out[b] = (np.exp(lp) * (lp - lq)).sum(axis=-1)
    return out


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """−ln softmax(logits)[target] for each row of a (positions, vocabulary) array, in float64 (in blocks of rows)."""
    targets = np.asarray(targets, np.int64)
    out = np.empty(logits.shape[0])
    for b in _row_blocks(logits.shape[0], logits.shape[-1]):
        out[b] = -np.take_along_axis(log_softmax(logits[b]), targets[b, None], axis=-1)[:, 0]
    return out


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 − cos(a_i, b_i) for each row, as ½‖a_i/‖a_i‖ − b_i/‖b_i‖‖² (NaN where a row is zero)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = a / np.linalg.norm(a, axis=-1, keepdims=True)
        v = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return 0.5 * ((u - v) ** 2).sum(axis=-1)


def relative_distance(base: np.ndarray, tuned: np.ndarray) -> np.ndarray:
    """‖tuned_i − base_i‖ / ‖base_i‖ for each row (NaN where the base row is zero)."""
    base, tuned = np.asarray(base, np.float64), np.asarray(tuned, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.linalg.norm(tuned - base, axis=-1) / np.linalg.norm(base, axis=-1)


def objective(model) -> str:
    """next_token for a causal-LM class, masked_token for a masked-LM class, none for a model without such a head
    (a PEFT model is judged by the model it wraps)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    name = type(inner).__name__

    def names(mapping) -> set[str]:
        out: set[str] = set()
        for v in mapping.values():
            out.update(v if isinstance(v, (tuple, list)) else (v,))
        return out

    if name in names(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        return NEXT_TOKEN
    if name in names(MODEL_FOR_MASKED_LM_MAPPING_NAMES):
        return MASKED_TOKEN
    return NONE


def mask_positions(seq_len: int, fraction: float, seed: int, window: int) -> np.ndarray:
    """The masked positions of a window: max(1, round(fraction·L)) of them, sorted, drawn without replacement from a
    generator seeded by (seed, L, window), so every checkpoint and every process draws the same."""
    m = max(1, int(round(fraction * seq_len)))
    rng = np.random.default_rng([seed, seq_len, window])
    return np.sort(rng.choice(seq_len, size=min(m, seq_len), replace=False))


@dataclass(frozen=True)
class Prediction:
    """What one window feeds the model and where its predictions are read: input ids, positions, target ids."""

    ids: tuple[int, ...]
    positions: tuple[int, ...]
    targets: tuple[int, ...]


def prediction(window: Window, kind: str, mask_id: int | None, fraction: float, seed: int) -> Prediction:
    """Next-token: the window as is, positions 0 … L−2 predicting tokens 1 … L−1. Masked-token: the window with
    :func:`mask_positions` replaced by ``mask_id``, predicting the original tokens there. None: no positions."""
    ids = window.ids
    if kind == NEXT_TOKEN:
        return Prediction(ids, tuple(range(len(ids) - 1)), ids[1:])
    if kind == MASKED_TOKEN:
        pos = mask_positions(len(ids), fraction, seed, window.index)
        masked = list(ids)
        for p in pos:
            masked[int(p)] = int(mask_id)
        return Prediction(tuple(masked), tuple(int(p) for p in pos), tuple(ids[int(p)] for p in pos))
    return Prediction(ids, (), ())


# ---- running the models ---------------------------------------------------------------------------

def forward(model, ids: tuple[int, ...]) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """(logits (L, V) or None without an LM head, hidden states [(L, d) per entry of output_hidden_states]), float32."""
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids], dtype=torch.long), output_hidden_states=True)
    logits = getattr(out, "logits", None)
    hidden = getattr(out, "hidden_states", None)
    if hidden is None:
        raise InputError(f"{type(model).__name__} returned no hidden states (output_hidden_states=True)")
    return (None if logits is None else logits[0].detach().float().numpy(),
            [h[0].detach().float().numpy() for h in hidden])


def _cache_folder(options: ForgettingOptions) -> Path:
    root = Path(options.cache_dir) if options.cache_dir else Path(tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="lab-forgetting-base-", dir=root))
    atexit.register(shutil.rmtree, folder, True)  # outlives every unit of the run (see attention's cache)
    return folder


def _text_sets(base, options: ForgettingOptions) -> list[tuple[str, Any]]:
    """(text set, subject whose texts() and corpus_name give it): the run's corpus, and the reference file."""
    sets = [("texts", base)]
    if options.reference_texts:
        sets.append(("reference", dataclasses.replace(base, corpus=Path(options.reference_texts), _model=None)))
    return sets


def _prepare(base, options: ForgettingOptions, ctx: ProbeContext) -> dict[str, Any]:
    """The base on every window of both text sets, once: its logits and hidden states on disk, its losses."""
    tok = load_tokenizer(base)
    cut = [(name, source, make_windows(tok, source.texts(), options.seq_len, options.windows, source.corpus_name))
           for name, source in _text_sets(base, options)]  # a bad texts file fails before a model is loaded
    model = load_model(base)
    kind = objective(model)
    mask_id = getattr(tok, "mask_token_id", None)
    if kind == MASKED_TOKEN and mask_id is None:
        raise InputError(f"{base.path}: a masked-LM model whose tokenizer has no mask token; save one with the tokenizer")
    folder = _cache_folder(options)
    sets = []
    for name, source, windows in cut:
        preds = [prediction(w, kind, mask_id, options.mask_fraction, ctx.seed) for w in windows]
        files: dict[int, dict[str, str]] = {}
        maps: dict[int, dict[str, np.ndarray]] = {}
        base_loss: list[float] = []
        for i, (w, p) in enumerate(zip(windows, preds)):
            ctx.tick(f"base forgetting ({name}): forward pass {i + 1}/{len(windows)} (L = {w.seq_len})")
            logits, hidden = forward(model, p.ids)
            if w.seq_len not in maps:
                maps[w.seq_len], files[w.seq_len] = {}, {}
                shapes = {"hidden": (options.windows, len(hidden), w.seq_len, hidden[0].shape[-1])}
                if kind != NONE:
                    shapes["logits"] = (options.windows, len(p.positions), logits.shape[-1])
                for what, shape in shapes.items():
                    path = folder / f"{name}-{what}-L{w.seq_len}.npy"
                    maps[w.seq_len][what] = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
                    files[w.seq_len][what] = str(path)
            maps[w.seq_len]["hidden"][w.index] = np.stack(hidden)
            if kind != NONE:
                at = logits[list(p.positions)]
                maps[w.seq_len]["logits"][w.index] = at
                base_loss.append(float(cross_entropy(at, np.array(p.targets)).mean()))
            else:
                base_loss.append(float("nan"))
        for m in maps.values():
            for a in m.values():
                a.flush()
        sets.append({"name": name, "corpus": str(source.corpus) if source.corpus is not None else "stdlib_docstrings",
                     "windows": windows, "predictions": preds, "files": files, "base_loss": base_loss})
    return {"objective": kind, "model_class": type(model.get_base_model() if hasattr(model, "get_base_model") else model).__name__,
            "sets": sets}


def _maps(files: dict[int, dict[str, str]]) -> dict[int, dict[str, np.ndarray]]:
    out = {}
    for L, paths in files.items():
        out[L] = {}
        for what, path in paths.items():
            if not os.path.exists(path):
                raise InputError(f"{path}: the base's outputs are not visible here; set --set forgetting.cache_dir to a "
                                 "folder every worker sees")
            out[L][what] = np.load(path, mmap_mode="r")
    return out


def _run(subject, options: ForgettingOptions, ctx: ProbeContext) -> Rows:
    prepared = subject.prepared
    if prepared is None:
        raise InputError("the forgetting probe compares every checkpoint with the base: pass --base BASE")
    kind = prepared["objective"]
    model = load_model(subject)
    if kind != NONE and objective(model) != kind:
        raise InputError(f"{subject.path}: the base predicts {kind.replace('_', ' ')}s but this checkpoint loads as "
                         f"{type(model).__name__}, without that head")
    tok = load_tokenizer(subject)
    rows: list[dict[str, Any]] = []
    layer_rows: list[dict[str, Any]] = []
    window_table: list[dict[str, Any]] = []
    for s in prepared["sets"]:
        maps = _maps(s["files"])
        per_len: dict[int, dict[str, list]] = {}
        for i, (w, p) in enumerate(zip(s["windows"], s["predictions"])):
            ctx.tick(f"{subject.checkpoint} forgetting ({s['name']}): forward pass {i + 1}/{len(s['windows'])} (L = {w.seq_len})")
            logits, hidden = forward(model, p.ids)
            base_hidden = maps[w.seq_len]["hidden"][w.index]
            if len(hidden) != base_hidden.shape[0]:
                raise InputError(f"{subject.path}: {len(hidden)} hidden states against the base's {base_hidden.shape[0]}")
            acc = per_len.setdefault(w.seq_len, {"kl": [], "tuned_loss": [], "base_loss": [], "cos": [], "rel": [],
                                                 "positions": len(p.positions)})
            acc["cos"].append([float(cosine_distance(base_hidden[k], hidden[k]).mean()) for k in range(len(hidden))])
            acc["rel"].append([float(relative_distance(base_hidden[k], hidden[k]).mean()) for k in range(len(hidden))])
            acc["base_loss"].append(s["base_loss"][i])
            if kind != NONE:
                at = logits[list(p.positions)]
                acc["kl"].append(float(kl_divergence(maps[w.seq_len]["logits"][w.index], at).mean()))
                acc["tuned_loss"].append(float(cross_entropy(at, np.array(p.targets)).mean()))
            else:
                acc["kl"].append(float("nan"))
                acc["tuned_loss"].append(float("nan"))
        window_table += window_rows(tok, s["windows"], "forgetting" if s["name"] == "texts" else "forgetting:reference")
        for L, acc in per_len.items():
            rows.append(_summary_row(s, L, acc, kind, prepared["model_class"], options, ctx.seed))
            cos, rel = np.array(acc["cos"]), np.array(acc["rel"])
            for k in range(cos.shape[1]):
                lo, hi = bootstrap_interval(cos[:, k], options.bootstrap, ctx.seed)
                layer_rows.append({"layer": k - 1 if k else None, "text_set": s["name"], "seq_len": L,
                                   "windows": int(cos.shape[0]), "hidden_state": k,
                                   "cosine_distance": float(np.nanmean(cos[:, k])) if np.isfinite(cos[:, k]).any() else float("nan"),
                                   "cosine_distance_lo": lo, "cosine_distance_hi": hi,
                                   "relative_distance": float(np.nanmean(rel[:, k])) if np.isfinite(rel[:, k]).any() else float("nan")})
    return {"windows": window_table, "forgetting": rows, "forgetting_layers": layer_rows}


def _summary_row(s: dict, L: int, acc: dict, kind: str, model_class: str, options: ForgettingOptions, seed: int) -> dict:
    kl, tuned, base = (np.array(acc[k], np.float64) for k in ("kl", "tuned_loss", "base_loss"))
    change = tuned - base
    row: dict[str, Any] = {"text_set": s["name"], "corpus": s["corpus"], "seq_len": L, "windows": int(kl.size),
                           "objective": kind, "positions": acc["positions"]}
    if kind == NONE:
        row.update(dict.fromkeys(("kl", "kl_lo", "kl_hi", "base_loss", "tuned_loss", "loss_change", "loss_change_lo",
                                  "loss_change_hi"), float("nan")))
        row["note"] = (f"{model_class} has no language-modelling head: KL(p_base ‖ p_tuned) and the losses are not "
                       "defined; hidden-state distances only (forgetting_layers)")
        return row
    kl_lo, kl_hi = bootstrap_interval(kl, options.bootstrap, seed)
    ch_lo, ch_hi = bootstrap_interval(change, options.bootstrap, seed)
    row.update({"kl": float(kl.mean()), "kl_lo": kl_lo, "kl_hi": kl_hi, "base_loss": float(base.mean()),
                "tuned_loss": float(tuned.mean()), "loss_change": float(change.mean()), "loss_change_lo": ch_lo,
                "loss_change_hi": ch_hi, "note": ""})
    return row


register(Probe(
    name="forgetting",
    tables=("windows", "forgetting", "forgetting_layers"),
    run=_run,
    scope="model",
    options=ForgettingOptions,
    default=False,
    prepare=_prepare,
    description="what fine-tuning cost the model: mean KL(p_base ‖ p_tuned) of the next-token (decoders) or masked-token "
                "(masked-LM encoders) distributions, the loss before and after, and per layer the cosine distance of "
                "hidden states, on --texts and on reference_texts (needs --base and a tokenizer; runs the models on text)",
))
