"""The records reading passes around: what a path holds (:class:`Checkpoint`, its :class:`Layout`), the
:class:`Base` it is compared with, and what to read for one module's update (:class:`ModuleRead`, its
:class:`Part` s). Plain data: no open files, no arrays, picklable.

A checkpoint and its layout are found by :func:`lab.checkpoints.discover.discover`, a base opened by
:func:`lab.checkpoints.base.open_base`. A :class:`ModuleRead` is built from the checkpoint's and the base's
tensor indexes when the run is planned (every lookup and shape checked then) by the planner its format has
in :data:`lab.checkpoints.formats.FORMATS`, and turned into :class:`~lab.deltas.Delta` objects by
:func:`lab.checkpoints.formats.read_module` wherever the work runs: in this process or on a Dask worker that
sees the same filesystem. It names tensors by (file, key) through
:class:`~lab.checkpoints.safetensors_header.TensorInfo`. The records live apart from the code that makes
and reads them, so that every format's module can name them without importing the others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.checkpoints.index import TensorIndex
from lab.checkpoints.pairing import BaseKeys
from lab.checkpoints.safetensors_header import TensorInfo
from lab.errors import FormatError


@dataclass
class Checkpoint:
    """One checkpoint to analyse, and every file lab reads from it."""

    name: str  # "checkpoint-500" for time-series members, else the folder/file name
    step: int | None  # N of checkpoint-N (or trainer_state.json's global_step for a final model)
    path: Path
    format: str  # "adapter", "full", "mps" (MPS Adaptation, lab/checkpoints/mps.py), "kohya" or "diffusers" (lab/checkpoints/kohya.py)
    files: list[Path] = field(default_factory=list)  # weights, index, configs: for the manifest
    layout: Layout | None = field(default=None, repr=False)
    index: TensorIndex | None = field(default=None, repr=False)  # built once, when discovered
    model_type: str | None = None  # config.json's model_type (full models)
    metadata: dict[str, str] = field(default_factory=dict)  # kohya/diffusers files: ss_network_dim, ss_network_alpha ... (manifest)
    hub: dict[str, str] | None = None  # given by hub name: repo_id, revision, commit, snapshot (lab/checkpoints/hub.py)


@dataclass(frozen=True)
class Layout:
    """Where a checkpoint's weights are: weight files or an index json, and its config."""

    format: str  # "adapter", "full", "mps", "kohya" or "diffusers"
    weights: tuple[Path, ...]  # the weight files, or the one *.index.json of a sharded model
    config: Path | None  # adapter_config.json (adapters) or config.json (full models), if present

    @property
    def sharded(self) -> bool:
        return self.weights[0].name.endswith(".index.json")

    def index(self) -> TensorIndex:
        """The tensor index (reads safetensors headers / index json; FormatError when damaged)."""
        if self.sharded:
            return TensorIndex.from_index_json(self.weights[0])
        return TensorIndex.from_files(list(self.weights))

    def model_type(self) -> str | None:
        """config.json's ``model_type`` (decides GPT-2's Conv1D layout), None without one."""
        if self.format != "full" or self.config is None:
            return None
        try:
            value = json.loads(self.config.read_bytes()).get("model_type")
        except (ValueError, RecursionError, AttributeError):  # ValueError: bad JSON, text or a 4300+ digit int
            raise FormatError(f"{self.config}: invalid JSON; fix or re-save the model config") from None
        return value if isinstance(value, str) else None


@dataclass
class Base:
    """A full base model, indexed (no tensor read yet); opened once per run."""

    path: Path
    index: TensorIndex
    model_type: str | None  # from its config.json: decides whether GPT-2 names are Conv1D
    keys: BaseKeys
    config: Path | None = None  # config.json, when present (for the manifest)
    hub: dict[str, str] | None = None  # given by hub name: repo_id, revision, commit, snapshot (lab/checkpoints/hub.py)

    @property
    def files(self) -> list[Path]:
        """Every file lab reads from the base: config.json, then the weights and index."""
        return ([self.config] if self.config else []) + list(self.index.files)


@dataclass(frozen=True)
class Part:
    """One Delta a module yields: the whole module, or a block of rows of a fused projection."""

    module: str
    role: str
    rows: tuple[int, int] | None = None  # row slice [start, stop) of the module's (out, in) update
    note: str = ""


@dataclass(frozen=True)
class ModuleRead:
    """How to read one module of one checkpoint.

    ``kind`` ``full``: ΔW = ``tensor`` − ``base`` (``conv1d``: both stored (in, out), transposed).
    ``kind`` ``lora``/``dora``: factors ``A`` and ``B`` (``embedding``: PEFT's embedding layout),
    ``scale``, DoRA's ``magnitude``, and the base weight when a base was given.
    ``kind`` ``mps``: ``B`` and the ``cores`` (C1, C2) of :mod:`lab.checkpoints.mps` (``A`` is C1,
    whose first axis is r), ``scale`` α/r.
    An image-model LoRA file's module (kohya, LyCORIS, diffusers; kinds ``lora``, ``loha``, ``lokr``,
    ``full``, ``dora``): ``kohya``, a :class:`lab.checkpoints.kohya.ImageModule`, and ``base``.
    Any other PEFT type (kind ``peft_type.lower()``): ``peft``, a
    :class:`lab.checkpoints.peft_general.PeftTensors` (the module's adapter tensors, read through PEFT), and ``base``.
    ``format`` names the reader (:data:`lab.checkpoints.formats.FORMATS`), set by the planner that made it.
    """

    checkpoint: str
    module: str
    layer: int | None
    role: str
    kind: str
    shape: tuple[int, int]  # (out, in) of the whole module's update
    parts: tuple[Part, ...]
    format: str  # its key in lab.checkpoints.formats.FORMATS: which function reads it ("full", "peft:loha", ...)
    tensor: TensorInfo | None = None
    base: TensorInfo | None = None
    A: TensorInfo | None = None
    B: TensorInfo | None = None
    magnitude: TensorInfo | None = None
    scale: float | None = None
    scale_source: str = ""  # adapters: "<adapter_config.json>: 'lora_alpha' = 16 / 'r' = 8", for messages
    embedding: bool = False
    conv1d: bool = False
    use_dora: bool = False
    allow_nonfinite: bool = False
    cores: tuple[TensorInfo, TensorInfo] | None = None
    peft: Any = None  # lab.checkpoints.peft_general.PeftTensors (not imported: that module imports this one)
    kohya: Any = None  # lab.checkpoints.kohya.ImageModule: a kohya / LyCORIS / diffusers module (same reason)

    @property
    def files(self) -> list[str]:
        """Every file this read touches (for a worker's path check)."""
        infos = (self.tensor, self.base, self.A, self.B, self.magnitude) + (self.cores or ())
        return sorted({str(i.file) for i in infos if i is not None} | set(self.peft.files if self.peft else ())
                      | set(self.kohya.files if self.kohya else ()))

    def params(self, rows: tuple[int, int] | None = None) -> int:
        """Stored (trainable) parameters of the update, or of a block of its rows: full rows × cols;
        adapters every factor (LoRA A and B, DoRA's magnitude too, MPS B, C1 and C2), a row block
        counting its rows of B (and magnitude) and the shared rest whole; other PEFT types the
        module's own adapter tensors (a row block: all of them)."""
        if self.peft is not None:
            return self.peft.params
        if self.kohya is not None:
            return self.kohya.params
        n = self.shape[0] if rows is None else rows[1] - rows[0]
        if self.kind == "full":
            return n * self.shape[1]
        shared = sum(_prod(i.shape) for i in (self.cores if self.cores is not None else (self.A,)))
        rowwise = sum(_prod(i.shape) for i in (self.B, self.magnitude) if i is not None)  # B and magnitude: split by rows
        if rows is None:
            return shared + rowwise
        return shared + rowwise * n // self.shape[0]

    @property
    def stored_bytes(self) -> int:
        """Bytes of float64 the whole dense update would take (what decides streaming)."""
        return self.shape[0] * self.shape[1] * 8


def _prod(shape) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out
