"""What model- and group-scope probes are handed: a loadable checkpoint, or a module across checkpoints.

A module-scope probe gets a :class:`~lab.deltas.Delta`. The other scopes get these:

* :class:`ModelSubject`: one checkpoint as a model that runs on text (eager attention, float32),
  loaded on first use: a full model folder as saved, a PEFT adapter applied to the base with
  PEFT, and the base itself for a probe's ``prepare`` step. ``texts()`` is the run's corpus;
  ``prepared`` holds what the probe's ``prepare`` computed on the base.
* :class:`GroupSubject`: the same module of several checkpoints (``members``, in run order), as
  Deltas.
* :class:`PairSubject`: two checkpoints as :class:`ModelSubject` (nothing loaded until asked),
  and what the probe's ``prepare`` computed on the base.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.deltas import Delta
from lab.errors import InputError


@dataclass
class ModelSubject:
    """One checkpoint (or the base) as a model; nothing is loaded until :meth:`load` is called."""

    checkpoint: str
    step: int | None
    path: Path
    format: str  # "adapter", "mps", "full" or "base"
    base: Path | None = None
    corpus: Path | None = None  # a texts file (one text per line, or .jsonl with "text"); None: stdlib docstrings
    prepared: Any = None
    _model: Any = field(default=None, repr=False)

    def load(self):
        """The model in eval mode, float32, eager attention (attention matrices can be read).

        The class is the one its config.json names (``architectures``, e.g. LlamaForCausalLM), so
        that a PEFT adapter's module names (saved from that class) match; AutoModel otherwise.
        """
        if self._model is None:
            if self.format == "adapter":
                if self.base is None:
                    raise InputError(f"{self.path}: running an adapter on text needs the model it was trained on: pass --base BASE")
                from peft import PeftModel

                model = PeftModel.from_pretrained(_pretrained(self.base), self.path)
            elif self.format == "mps":
                if self.base is None:
                    raise InputError(f"{self.path}: running an MPS adapter on text needs the model it was trained on: pass --base BASE")
                from lab.finetune.mps import load_mps

                model = load_mps(_pretrained(self.base), self.path)
            else:
                model = _pretrained(self.path)
            self._model = model.eval()
        return self._model

    def tokenizer(self):
        """The tokenizer saved with the checkpoint, else the base's (InputError when neither has one)."""
        from transformers import AutoTokenizer

        for where in (self.path, self.base):
            if where is not None and any(Path(where, n).is_file() for n in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")):
                return AutoTokenizer.from_pretrained(where)
        raise InputError(f"{self.path}: no tokenizer saved with the checkpoint or its base; save one with save_pretrained")

    @property
    def corpus_name(self) -> str:
        """How messages name the corpus: the texts file, or the default."""
        return f"the texts file {self.corpus}" if self.corpus is not None else "the standard-library docstring corpus"

    def texts(self) -> list[str]:
        """The run's corpus: the texts file, else the standard-library docstrings the fine-tuner uses."""
        from lab.finetune.corpus import stdlib_docstrings, text_file

        # a user's file: each line (or .jsonl "text") whole, as the windows' definition says
        return text_file(self.corpus) if self.corpus is not None else [d.text for d in stdlib_docstrings()]


@dataclass
class GroupSubject:
    """The same module across several checkpoints: names, steps and Deltas, in run order."""

    module: str
    members: list[str]
    steps: list[int | None]
    deltas: list[Delta]


@dataclass
class PairSubject:
    """Two checkpoints of the run (``first`` before ``second`` in run order) as models, loaded on use."""

    first: ModelSubject
    second: ModelSubject
    prepared: Any = None

    @property
    def name(self) -> str:
        """``first:second``, the pair's name in the tables' checkpoint column."""
        return f"{self.first.checkpoint}:{self.second.checkpoint}"


def _pretrained(path: Path):
    """A transformers model of the class its config names, float32, eager attention."""
    import json

    import transformers

    config = Path(path) / "config.json"
    names = []
    if config.is_file():
        try:
            names = json.loads(config.read_text()).get("architectures") or []
        except (ValueError, AttributeError):
            names = []
    cls = next((getattr(transformers, n) for n in names if hasattr(transformers, str(n))), transformers.AutoModel)
    return cls.from_pretrained(path, attn_implementation="eager", dtype="float32")
