"""MPS Adaptation adapters (arXiv 2601.06788; written by ``lab finetune --method mps``) read as
factored updates.

The folder holds ``mps_adapter_config.json`` (method, r, chi, d1, d2, alpha, modules, and
``split_pattern``: {module: [d1, d2]} where a module's input splits differently) and
``mps_adapter_model.safetensors`` with ``<module>.mps_B`` (out × r), ``<module>.mps_C1``
(r × d1 × χ) and ``<module>.mps_C2`` (χ × d2). The update is ΔW = (α/r)·B·A_MPS with
A_MPS[a, i1·d2 + i2] = Σ_c C1[a, i1, c]·C2[c, i2]: read as :class:`~lab.deltas.Factors` (B, the
r × d_in A_MPS contracted in float64, α/r), never a dense ΔW, so every probe's factored path applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from lab.checkpoints import fused
from lab.checkpoints.adapter_config import finite_number, positive_int, shown, read_json
from lab.checkpoints.index import TensorIndex
from lab.checkpoints.loader import TensorLoader
from lab.checkpoints.naming import module_name, natural_key
from lab.checkpoints.records import Base, ModuleRead
from lab.checkpoints.safetensors_header import TensorInfo
from lab.deltas import Factors
from lab.errors import FormatError, MatchError, ShapeError

MPS_CONFIG = "mps_adapter_config.json"
MPS_WEIGHTS = "mps_adapter_model.safetensors"
_KEY = re.compile(r"^(?P<module>.+)\.mps_(?P<part>B|C1|C2)$")


@dataclass(frozen=True)
class MPSConfig:
    """What lab needs from mps_adapter_config.json."""

    path: Path
    r: int
    chi: int
    d1: int
    d2: int
    alpha: float
    splits: dict[str, tuple[int, int]]

    @property
    def scale(self) -> float:
        return self.alpha / self.r

    def split(self, module: str) -> tuple[int, int]:
        return self.splits.get(module, (self.d1, self.d2))

    @classmethod
    def read(cls, path: Path) -> MPSConfig:
        """The config at ``path``; FormatError naming the file and field when it is invalid."""
        raw = read_json(path, "fix or re-save the MPS adapter")
        if not isinstance(raw, dict):
            raise FormatError(f"{path}: expected a JSON object, got {shown(raw)}")
        if raw.get("method") != "mps":
            raise FormatError(f"{path}: 'method' must be \"mps\", got {shown(raw.get('method'))}")
        pattern = raw.get("split_pattern") or {}
        if not isinstance(pattern, dict):
            raise FormatError(f"{path}: 'split_pattern' must be an object of module -> [d1, d2], got {shown(pattern)}")
        splits = {}
        for module, value in pattern.items():
            if not (isinstance(value, list) and len(value) == 2):
                raise FormatError(f"{path}: split_pattern[{module!r}] must be [d1, d2], got {shown(value)}")
            splits[module] = (positive_int(path, f"split_pattern[{module!r}][0]", value[0]),
                              positive_int(path, f"split_pattern[{module!r}][1]", value[1]))
        return cls(path, *(positive_int(path, k, raw.get(k)) for k in ("r", "chi", "d1", "d2")),
                   alpha=finite_number(path, "alpha", raw.get("alpha")), splits=splits)


@dataclass(frozen=True)
class MPSModule:
    module: str
    B: TensorInfo
    C1: TensorInfo
    C2: TensorInfo

    @property
    def shape(self) -> tuple[int, int]:
        return (self.B.shape[0], self.C1.shape[1] * self.C2.shape[1])


def mps_modules(index: TensorIndex, config: MPSConfig, weights: Path) -> list[MPSModule]:
    """The modules of an MPS weight file, every shape checked against the config (one-line errors)."""
    found: dict[str, dict[str, TensorInfo]] = {}
    for key, info in index.tensors.items():
        m = _KEY.match(key)
        if m:
            found.setdefault(m["module"], {})[m["part"]] = info
    if not found:
        raise FormatError(f"{weights}: no MPS cores (<module>.mps_B / mps_C1 / mps_C2 tensors) found")
    out = []
    for module, parts in found.items():
        missing = [p for p in ("B", "C1", "C2") if p not in parts]
        if missing:
            raise FormatError(f"{weights}: module '{module}' has no mps_{missing[0]} tensor; the adapter is incomplete")
        d1, d2 = config.split(module)
        want = {"B": (parts["B"].shape[0] if len(parts["B"].shape) == 2 else -1, config.r),
                "C1": (config.r, d1, config.chi), "C2": (config.chi, d2)}
        for part, shape in want.items():
            info = parts[part]
            if not info.floating:
                raise FormatError(f"{info.file}: tensor '{info.key}' is {info.dtype}; MPS cores are floating point")
            if tuple(info.shape) != shape:
                raise ShapeError(f"{info.file}: tensor '{info.key}' has shape {list(info.shape)}, expected {list(shape)} "
                                 f"from r = {config.r}, chi = {config.chi}, d1·d2 = {d1}·{d2} in {config.path.name}")
        out.append(MPSModule(module, parts["B"], parts["C1"], parts["C2"]))
    return sorted(out, key=lambda m: natural_key(m.module))


def plan_mps(ckpt, base: Base | None, select: Callable[[str], bool], allow_nonfinite: bool,
             fmt: str) -> list[ModuleRead]:
    """The module reads of an MPS adapter (kind ``mps``); base lookups checked now."""
    config = MPSConfig.read(ckpt.layout.config)
    model_type = base.model_type if base is not None else None
    out = []
    for m in mps_modules(ckpt.index, config, ckpt.layout.weights[0]):
        name = module_name(m.module, model_type)
        chosen = fused.selected(fused.parts(name, m.shape[0]), select)
        if not chosen:
            continue
        out.append(ModuleRead(
            checkpoint=ckpt.name, format=fmt, module=name.module, layer=name.layer, role=name.role, kind="mps",
            shape=m.shape, parts=chosen, base=_base_tensor(m, base) if base is not None else None,
            A=m.C1, B=m.B, cores=(m.C1, m.C2), scale=config.scale, allow_nonfinite=allow_nonfinite,
        ))
    return out


def _base_tensor(m: MPSModule, base: Base) -> TensorInfo:
    wanted = f"{m.module}.weight"
    key = base.keys.find(wanted, m.B.file)
    if key is None:
        raise MatchError(f"{base.path}: no tensor '{wanted}' for MPS module '{m.module}' of {m.B.file}; pass the base the adapter was trained on")
    info = base.index[key]
    if tuple(info.shape) != m.shape:
        raise ShapeError(f"{info.file}: tensor '{key}' is {list(info.shape)} but the MPS adapter's '{m.module}' in {m.B.file} "
                         f"updates a {list(m.shape)} weight; pass the base the adapter was trained on")
    return info


def a_mps(C1: np.ndarray, C2: np.ndarray) -> np.ndarray:
    """A_MPS (r × d1·d2) from the cores, in float64: A[a, i1·d2 + i2] = Σ_c C1[a, i1, c]·C2[c, i2]."""
    r, d1, chi = C1.shape
    return (np.asarray(C1, np.float64).reshape(r * d1, chi) @ np.asarray(C2, np.float64)).reshape(r, d1 * C2.shape[1])


def read_mps(spec: ModuleRead, loader: TensorLoader, stream_bytes: int | None = None) -> tuple[Factors, np.ndarray | None, str]:
    """(factors (B, A_MPS, α/r), the base weight or None, note) of one MPS module read (``stream_bytes``:
    not used; the factors and the base weight are read whole, as a format's reader may be called with it)."""
    C1, C2 = (loader.get(info, spec.allow_nonfinite) for info in spec.cores)
    B = loader.get(spec.B, spec.allow_nonfinite)
    W = loader.get(spec.base, spec.allow_nonfinite) if spec.base is not None else None
    return Factors(B, a_mps(C1, C2), spec.scale), W, ""
