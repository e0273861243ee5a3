"""What every structured reader needs: the module's tensors by PEFT parameter name, the adapter's
PEFT config, the base weight in the (out, in) layout, and the checks on what it returns."""

from __future__ import annotations


from functools import lru_cache
from pathlib import Path

import numpy as np

from lab.checkpoints.adapter_weights import PEFT_PREFIX
from lab.checkpoints.loader import TensorLoader
from lab.checkpoints.module_delta import STREAM_BYTES, base_weight  # noqa: F401 (the readers use both through this module)
from lab.checkpoints.peft_skeleton import peft_config
from lab.checkpoints.records import ModuleRead
from lab.checkpoints.safetensors_header import TensorInfo
from lab.deltas import Factors
from lab.errors import FormatError


def tensors(spec: ModuleRead) -> dict[str, TensorInfo]:
    """The module's adapter tensors by PEFT parameter name (``lora_A``, ``hada_w1_a``, ``ia3_l``, ...)."""
    prefix = f"{spec.peft.module}."
    return {info.key.removeprefix(PEFT_PREFIX).removeprefix(prefix): info for info in spec.peft.tensors}


def shared(spec: ModuleRead) -> dict[str, TensorInfo]:
    """The tuner's model-level tensors by their last name part (VeRA's ``vera_A``, ``vera_B``)."""
    return {info.key.rsplit(".", 1)[-1]: info for info in spec.peft.shared}


def config(spec: ModuleRead):
    """PEFT's own config object of the adapter (defaults filled in as PEFT fills them), cached per file version."""
    path = Path(spec.peft.config)
    stat = path.stat()
    return _config(str(path), spec.peft.peft_type, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _config(path: str, ptype: str, mtime_ns: int, size: int):
    return peft_config(path, ptype)


def get(spec: ModuleRead, loader: TensorLoader, info: TensorInfo) -> np.ndarray:
    """An adapter tensor as float64 (NonFiniteError naming it unless --allow-nonfinite)."""
    return loader.get(info, spec.allow_nonfinite)


def require(spec: ModuleRead, found: dict[str, TensorInfo], *names: str) -> list[TensorInfo]:
    """The named tensors of the module, or a FormatError naming the file and the missing one."""
    missing = [n for n in names if n not in found]
    if missing:
        raise FormatError(f"{spec.peft.tensors[0].file}: no tensor '{missing[0]}' for module '{spec.peft.module}' of the "
                          f"{spec.peft.peft_type} adapter; the adapter is incomplete")
    return [found[n] for n in names]


def check_shape(spec: ModuleRead, info: TensorInfo, array: np.ndarray, want: tuple[int, ...]) -> None:
    """ShapeError naming the file and tensor when ``array`` is not ``want``."""
    from lab.errors import ShapeError

    if tuple(array.shape) != tuple(want):
        raise ShapeError(f"{info.file}: tensor '{info.key}' is {list(array.shape)} but module '{spec.peft.module}' "
                         f"({spec.shape[0]}×{spec.shape[1]}) needs {list(want)}")


def checked(spec: ModuleRead, factors: Factors) -> Factors:
    """``factors`` unless s·B·A overflows float64 (finite tensors, a ‖ΔW‖_F beyond float64) or its scale, which
    comes from the config's alpha, is not a finite number (``lora_alpha: Infinity``): FormatError."""
    if not np.isfinite(factors.scale):
        raise FormatError(f"{spec.peft.config}: the {spec.peft.peft_type} scale of '{spec.peft.module}' is {factors.scale} "
                          "(from the config's alpha); it must be a finite number")
    if factors.is_finite() and not np.isfinite(factors.fro_norm()):
        raise FormatError(f"{spec.peft.tensors[0].file}: the {spec.peft.peft_type} update of '{spec.peft.module}' "
                          "overflows float64; the adapter's tensors are not a usable update")
    return factors


def checked_dense(spec: ModuleRead, delta: np.ndarray) -> np.ndarray:
    """``delta`` unless it holds NaN/inf made from finite tensors (then FormatError, unless allowed)."""
    if not spec.allow_nonfinite and not np.isfinite(delta).all():
        raise FormatError(f"{spec.peft.tensors[0].file}: the {spec.peft.peft_type} update of '{spec.peft.module}' is not "
                          "finite in float64; pass --allow-nonfinite to analyse it anyway")
    return np.ascontiguousarray(delta)
