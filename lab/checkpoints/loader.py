"""Tensors handed out by key as float64 arrays, with one weight file open at a time.

safetensors files are opened with ``safe_open`` (memory mapped: reading a tensor touches only
its bytes), pickles through ``lab.checkpoints.pickled``. Peak memory therefore follows the
tensors in use, not the checkpoint. Half-precision inputs (bf16, fp16, fp8) are upcast to
float64 here, before any arithmetic, and every tensor is checked for NaN/inf.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from lab.checkpoints.index import TensorIndex
from lab.checkpoints.pickled import load_state_dict
from lab.errors import FormatError, NonFiniteError


class LazyLoader:
    """Reads tensors of one checkpoint on demand; switching files closes the previous one."""

    def __init__(self, index: TensorIndex, *, allow_nonfinite: bool = False) -> None:
        self.index = index
        self.allow_nonfinite = allow_nonfinite
        self._path: Path | None = None
        self._handle: Any = None  # the open safe_open handle or loaded pickle: keeps the mmap alive
        self._getter: Any = None

    def get(self, key: str) -> np.ndarray:
        """The tensor ``key`` as a float64 array (NonFiniteError on NaN/inf unless allowed)."""
        info = self.index[key]
        tensor = self._open(info.file)(key)
        array = tensor.to(torch.float64).numpy()
        if not self.allow_nonfinite and not np.isfinite(array).all():
            bad = int(np.size(array) - np.isfinite(array).sum())
            raise NonFiniteError(
                f"{info.file}: tensor '{key}' holds {bad} NaN/inf value(s); pass --allow-nonfinite to analyse it anyway"
            )
        return array

    def _open(self, path: Path):
        if path != self._path:
            self.close()
            if path.suffix == ".safetensors":
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

    def __enter__(self) -> LazyLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
