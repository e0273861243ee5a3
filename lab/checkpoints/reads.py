"""What to read for one module's update: a picklable description, no open files, no arrays.

A :class:`ModuleRead` is built from the checkpoint's and the base's tensor indexes when the run is
planned (every lookup and shape checked then), and turned into :class:`~lab.deltas.Delta` objects
by :func:`lab.checkpoints.read.read_module` wherever the work runs: in this process or on a Dask
worker that sees the same filesystem. It names tensors by (file, key) through
:class:`~lab.checkpoints.safetensors_header.TensorInfo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.checkpoints.safetensors_header import TensorInfo


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
    """

    checkpoint: str
    module: str
    layer: int | None
    role: str
    kind: str
    shape: tuple[int, int]  # (out, in) of the whole module's update
    parts: tuple[Part, ...]
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
