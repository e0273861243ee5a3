"""Tensors handed out by (file, key) as float64 arrays, with one weight file open at a time.

safetensors tensors of a floating dtype are read by ``pread`` of their bytes alone
(:func:`lab.checkpoints.ranges.read_array`; no memory map, no torch), other safetensors dtypes
through ``safe_open``, pickles through ``lab.checkpoints.pickled`` (loaded memory-mapped, once per
file while it is the current one). Peak memory therefore follows the tensors in use, not the checkpoint.
Half-precision inputs (bf16, fp16, fp8) are upcast to float64 here, before any arithmetic, and
every tensor is checked for NaN/inf. A loader holds open handles: it lives in the process that
reads (one per worker), never in a plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lab.checkpoints.pickled import load_state_dict
from lab.checkpoints.ranges import READABLE, read_array
from lab.checkpoints.safetensors_header import TensorInfo
from lab.errors import FormatError, NonFiniteError


def check_finite(array: np.ndarray, info: TensorInfo) -> None:
    """NonFiniteError naming the file and tensor when ``array`` holds NaN or inf."""
    if not np.isfinite(array).all():
        bad = int(np.size(array) - np.isfinite(array).sum())
        raise NonFiniteError(
            f"{info.file}: tensor '{info.key}' holds {bad} NaN/inf value(s); pass --allow-nonfinite to analyse it anyway"
        )


class TensorLoader:
    """Reads tensors on demand by their :class:`TensorInfo`; switching files closes the previous one."""

    def __init__(self) -> None:
        self._path: Path | None = None
        self._handle: Any = None  # the open safe_open handle or loaded pickle: keeps the mmap alive
        self._getter: Any = None

    def get(self, info: TensorInfo, allow_nonfinite: bool = False) -> np.ndarray:
        """The tensor as a float64 array (NonFiniteError on NaN/inf unless allowed)."""
        if Path(info.file).suffix == ".safetensors" and info.dtype in READABLE:
            array = read_array(info)  # by pread, without torch
        else:
            import torch

            try:
                tensor = self._open(Path(info.file))(info.key)
            except KeyError:
                raise FormatError(f"{info.file}: tensor '{info.key}' is no longer in the file; was it re-saved during the run?") from None
            array = tensor.to(torch.float64).numpy()
        if not allow_nonfinite:
            check_finite(array, info)
        return array

    def _open(self, path: Path):
        if path != self._path:
            self.close()
            if not path.is_file():
                raise FormatError(f"{path}: file not found while reading; it was moved or deleted during the run")
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                try:
                    handle = safe_open(str(path), framework="pt")
                except Exception as e:  # the header passed our checks, so this is damage deeper in
                    raise FormatError(f"{path}: safetensors refused the file ({e}); re-save or re-download it") from None
                self._handle = handle
                getter = handle.get_tensor
            else:
                state = load_state_dict(path)
                self._handle = state
                getter = state.__getitem__
            self._path, self._getter = path, getter
        return self._getter

    def close(self) -> None:
        """Drop the open file (safe_open handles close when released)."""
        self._path = self._handle = None
        self._getter = None

    def __enter__(self) -> TensorLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
