"""Shared inputs of the fine-tuning tests (a module of its own: ``conftest`` is not importable by
name when several test folders have one)."""

from __future__ import annotations

from pathlib import Path

from lab.finetune import FinetuneConfig, finetune

# Two-sentence texts: the first sentence is the contrastive anchor, the rest its positive.
TEXTS = [
    "Return the sum of two numbers. Both arguments must be integers or floats.",
    "Open a file for reading. The file is closed when the block ends.",
    "Sort a list in place. The sort is stable and uses the key function.",
    "Parse a JSON document. Raises ValueError when the text is not valid JSON.",
    "Compress bytes with zlib. The level sets the trade-off between speed and size.",
    "Split a path into head and tail. The tail never contains a slash.",
    "Create a temporary directory. It is removed with all its contents on exit.",
    "Format a date as text. The format string follows the C library's strftime.",
    "Send an HTTP request. The response body is returned as bytes.",
    "Hash a message with SHA-256. The digest is returned as a hexadecimal string.",
    "Start a new thread. The target function runs with the given arguments.",
    "Read a CSV file. Each row becomes a dictionary keyed by the header.",
]


def run(out: Path, **options) -> Path:
    """A short fine-tune with test-sized defaults."""
    defaults = dict(steps=4, save_every=2, batch_size=4, max_length=24)
    return finetune(FinetuneConfig(out=str(out), **{**defaults, **options}))


# The session runs train on the whole 12-text file in every step (batch size 12), so the
# training batch is also a fixed evaluation batch; two saved steps each.
FIXED = dict(batch_size=len(TEXTS), steps=2, save_every=1, r=4, alpha=8)
