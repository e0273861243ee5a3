"""Token windows for the probes that run the model: defined exactly, so anyone can rebuild them.

Each text of the corpus is tokenized **without special tokens**, the texts are joined in order by
the tokenizer's separator token (its eos token, or sep for BERT-style tokenizers that have no
eos), and the stream is cut into consecutive windows of exactly L tokens from offset 0; the first
N windows are used. No padding and no masked positions, so every attention row is a probability
distribution over real tokens; the base and every checkpoint see the same windows.

    >>> # stream = t(text_1) + [sep] + t(text_2) + [sep] + …;  window w = stream[w·L : (w+1)·L]

Also here: the options every model-running probe shares (``seq_len``, ``windows``), the model's
attention layers found by their projections, and the ``windows`` table's rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lab.errors import InputError
from lab.probes.registry import field_help

PREVIEW_CHARS = 80


@dataclass(frozen=True)
class Window:
    """One window: its length L, index w, token offset w·L in the stream, and its token ids."""

    seq_len: int
    index: int
    offset: int
    ids: tuple[int, ...]


def load_model(subject):
    """``subject.load()`` with a base or checkpoint that transformers/PEFT cannot load as one InputError line."""
    try:
        return subject.load()
    except InputError:
        raise
    except Exception as e:  # transformers and PEFT raise OSError, ValueError, KeyError, RuntimeError…
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{subject.path}: cannot load it as a model to run on text ({first})") from None


def load_tokenizer(subject):
    """``subject.tokenizer()`` with a tokenizer that cannot be loaded as one InputError line."""
    try:
        return subject.tokenizer()
    except InputError:
        raise
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{subject.path}: cannot load its tokenizer ({first})") from None


def separator_id(tokenizer) -> int:
    """The token that joins texts: eos, else sep (BERT-style); InputError when it has neither."""
    for name in ("eos_token_id", "sep_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    raise InputError(f"tokenizer {type(tokenizer).__name__} has neither an eos nor a sep token to join texts with")


def token_stream(tokenizer, texts: list[str], need: int) -> list[int]:
    """The joined token stream, tokenized only as far as ``need`` tokens (the corpus can be large)."""
    sep = separator_id(tokenizer)
    stream: list[int] = []
    for i, text in enumerate(texts):
        if i:
            stream.append(sep)
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(stream) >= need:
            break
    return stream


def make_windows(tokenizer, texts: list[str], seq_lens: tuple[int, ...], n_windows: int,
                 corpus: str = "the corpus") -> list[Window]:
    """The first ``n_windows`` windows of every length in ``seq_lens`` (InputError naming ``corpus``,
    e.g. the texts file, if it is too short)."""
    stream = token_stream(tokenizer, texts, max(seq_lens) * n_windows)
    out = []
    for L in seq_lens:
        have = len(stream) // L
        if have < n_windows:
            raise InputError(f"{corpus} has {len(stream)} tokens: {have} windows of {L}, fewer than the {n_windows} asked "
                             "for; pass a longer --texts file or fewer --windows")
        out += [Window(L, w, w * L, tuple(stream[w * L:(w + 1) * L])) for w in range(n_windows)]
    return out


def window_rows(tokenizer, windows: list[Window], probe: str) -> list[dict[str, Any]]:
    """``windows`` table rows: which tokens each window holds, with the start of its decoded text."""
    return [{"probe": probe, "seq_len": w.seq_len, "window": w.index, "token_offset": w.offset,
             "text": tokenizer.decode(list(w.ids))[:PREVIEW_CHARS]} for w in windows]


def check_window_options(seq_len: tuple[int, ...], windows: int) -> tuple[int, ...]:
    """The lengths sorted and unique; ValueError (an option error) for L < 2 or windows < 1."""
    if not seq_len or any(L < 2 for L in seq_len):
        raise ValueError(f"seq_len {seq_len}: every window length must be at least 2 tokens")
    if windows < 1:
        raise ValueError(f"windows={windows}: at least one window is needed")
    return tuple(sorted(set(seq_len)))


def seq_len_field():
    return field_help("window lengths L in tokens (--seq-len sets it for every probe that has it)", default=(64, 128, 256))


def windows_field():
    return field_help("number of windows N per length, the first N of the token stream (--windows)", default=16)


# ---- the model's attention layers ----------------------------------------------------------------

PROJECTIONS = (("q_proj", "k_proj", "v_proj"), ("query", "key", "value"))
_LAYER = re.compile(r"\.(\d+)\.")


@dataclass
class AttentionLayer:
    """One attention module: its index, the module, and its q/k/v projections (as the model runs them)."""

    layer: int
    name: str
    module: Any
    q: Any
    k: Any
    v: Any


def attention_layers(model) -> list[AttentionLayer]:
    """The self-attention modules (those with q/k/v projections: LLaMA's q_proj…, BERT's query…), in order."""
    out = []
    for name, module in model.named_modules():
        for names in PROJECTIONS:
            if all(hasattr(module, n) for n in names):
                m = _LAYER.search(name + ".")
                out.append(AttentionLayer(int(m.group(1)) if m else len(out), name, module,
                                          *(getattr(module, n) for n in names)))
                break
    if not out:
        raise InputError(f"{type(model).__name__}: no attention layer with q/k/v projections (q_proj… or query…) found")
    return out


def head_shape(model) -> tuple[int, int, int]:
    """(query heads, key/value heads, head dimension) from the model's config (GQA: fewer kv heads)."""
    cfg = model.config
    heads = int(cfg.num_attention_heads)
    kv = int(getattr(cfg, "num_key_value_heads", None) or heads)
    d_head = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    return heads, kv, d_head
