"""What a merge does to the model's outputs: the last hidden states of the merged model against
the model with the exact weighted sum T applied, on the activation probes' token windows.

    hidden_rel_error = ‖H_M − H_T‖_F / ‖H_T − H_0‖_F

H_X stacks the last layer's hidden states of model X over the windows (the first N windows of
length L of the corpus, exactly as :mod:`lab.probes.windows` defines them for the attention
probes), H_0 is the base model's. The denominator is the change the exact merge makes, so the
number reads as "the fraction of the merged adapters' effect on the outputs that the merge gets
wrong" (a weight-space error is not what users care about in the end).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from lab.engine.subjects import ModelSubject
from lab.probes.windows import load_model, load_tokenizer, make_windows


def windows_for(base: Path, texts: Path, seq_len: int, windows: int):
    """The token windows (InputError, before anything is written, when the corpus is too short)."""
    subject = ModelSubject("base", None, Path(base), "base", corpus=Path(texts))
    return make_windows(load_tokenizer(subject), subject.texts(), (seq_len,), windows, subject.corpus_name)


def _hidden(model, windows) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.stack([model(input_ids=torch.tensor([w.ids]), output_hidden_states=True).hidden_states[-1][0]
                         .double().numpy() for w in windows])


def hidden_errors(base: Path, merged: list[Path], exact_merges, template: dict, dtype: str, windows) -> list[float]:
    """hidden_rel_error of each adapter in ``merged`` against the exact sum (written once, as a stack)."""
    from lab.merge.adapters import write_adapter

    H0 = _hidden(load_model(ModelSubject("base", None, Path(base), "base")), windows)
    with tempfile.TemporaryDirectory() as tmp:
        exact = Path(tmp) / "exact"
        write_adapter(exact, exact_merges, template, "F64")  # T itself, unrounded
        HT = _hidden(load_model(ModelSubject("exact", None, exact, "adapter", base=Path(base))), windows)
    change = float(np.linalg.norm(HT - H0))
    out = []
    for path in merged:
        HM = _hidden(load_model(ModelSubject(path.name, None, Path(path), "adapter", base=Path(base))), windows)
        diff = float(np.linalg.norm(HM - HT))
        out.append(diff / change if change > 0 else (0.0 if diff == 0 else float("inf")))
    return out
