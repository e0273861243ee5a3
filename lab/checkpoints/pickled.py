"""Tensors from PyTorch pickles (``pytorch_model.bin``, ``adapter_model.bin``), safely.

Only ``torch.load(weights_only=True)`` is used: its unpickler builds tensors and plain
containers and refuses anything that would run code. Files in the zip format are memory
mapped (``mmap=True``), so a tensor's bytes are read when it is used, not at load time.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from lab.checkpoints.safetensors_header import check_key
from lab.errors import FormatError

if TYPE_CHECKING:  # torch is imported where a pickle is read: planning safetensors inputs never needs it
    import torch


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a PyTorch pickle by key (non-tensor entries dropped).

    Raises FormatError naming the file when the pickle needs code to load or is unreadable.
    """
    path = Path(path)
    try:
        obj = _load(path, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise FormatError(f"{path}: not a readable PyTorch file ({_first_line(e)}); re-save it") from None
        try:
            obj = _load(path, mmap=False)  # the legacy (pre-zip) format cannot be memory mapped
        except RuntimeError as e:  # a damaged legacy file fails again, now for its own reason
            raise FormatError(f"{path}: not a readable PyTorch file ({_first_line(e)}); re-save it") from None
    # Some training scripts wrap the weights: {"state_dict": {...}} or {"model": {...}}.
    if isinstance(obj, dict) and len(obj) == 1:
        (inner,) = obj.values()
        if isinstance(inner, dict):
            obj = inner
    if not isinstance(obj, dict):
        raise FormatError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    import torch

    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise FormatError(f"{path}: holds no tensors")
    for key, tensor in tensors.items():
        check_key(path, key)
        _check_dense(path, key, tensor)
    # a saved nn.Parameter comes back requiring grad, and such a tensor refuses .numpy()
    return {key: tensor.detach() for key, tensor in tensors.items()}


def _check_dense(path: Path, key: str, tensor: torch.Tensor) -> None:
    """FormatError for a tensor without plain dense values (``weights_only`` loads sparse, quantized
    and meta tensors too): reading one as an array would fail mid-run or lose what it means."""
    import torch

    if tensor.layout != torch.strided:
        what = f"a {str(tensor.layout).removeprefix('torch.')} tensor"
    elif tensor.is_quantized:
        what = f"quantized ({str(tensor.dtype).removeprefix('torch.')})"
    elif tensor.is_meta:
        what = "a meta tensor (a shape without values)"
    else:
        return
    raise FormatError(f"{path}: tensor '{key}' is {what}; lab reads dense tensors: save it dense (e.g. .to_dense(), .dequantize())")


def _load(path: Path, mmap: bool) -> object:
    import torch

    try:
        # torch warns while loading some files (TypedStorage for quantized tensors, legacy formats):
        # lab decides what the file means itself, and a stray warning would break the CLI's one line
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise FormatError(
            f"{path}: this pickle needs code to load, which lab refuses ({_refusal(e)}); "
            "convert it to safetensors in a trusted environment"
        ) from None
    except RuntimeError:
        raise
    except Exception as e:  # truncated zip, EOF, bad magic number: all mean the file is damaged
        raise FormatError(f"{path}: not a readable PyTorch file ({type(e).__name__}: {_first_line(e)}); re-save it") from None


def _refusal(e: BaseException) -> str:
    """The part of torch's weights_only refusal that names the offending global."""
    match = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
    return f"it references {match.group(1)}" if match else _first_line(e)


def _first_line(e: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))  # torch puts terminal colour codes in messages
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0].split(". ")[0] if lines else type(e).__name__
