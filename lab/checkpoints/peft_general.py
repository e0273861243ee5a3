"""Adapters of every other weight-modifying PEFT type (LoHa, LoKr, IA3, VeRA, AdaLoRA, OFT, BOFT,
HRA, FourierFT, MiSS, SHiRA, RandLoRA, ...) read exactly, through PEFT itself, one module at a time.

lab has structured readers for LoRA/rsLoRA/DoRA (:mod:`lab.checkpoints.adapter`), MPS adapters
(:mod:`lab.checkpoints.mps`) and, among the types planned here, AdaLoRA, VeRA, LoHa, LoKr and IA3
(:mod:`lab.checkpoints.peft_types`: factors, a Kronecker product or W·diag(l − 1), without PEFT at read
time; a layer such a reader does not handle comes back here). Every other ``peft_type`` (OFT, BOFT,
HRA, FourierFT, MiSS, SHiRA, RandLoRA, ...) is read by this general path, exact by construction
because PEFT computes the update:

* **Planning** (no tensor data): the base's ``config.json`` builds the model on the meta device
  (no storage; the skeleton of :mod:`lab.checkpoints.peft_skeleton`) and PEFT wraps it with the
  adapter's own config, first all on meta to check the file's shapes before anything is allocated,
  then with every base parameter a one-element
  placeholder so that PEFT initialises what it derives and does not save (OFT's index buffers,
  AdaLoRA's ranknum). The adapter file's keys and shapes are loaded onto that skeleton the way
  ``PeftModel.from_pretrained`` loads them (``set_peft_model_state_dict``, PEFT's key renaming),
  as meta tensors, so a tensor PEFT would not accept fails now, naming file and tensor. The target
  modules are the skeleton's tuner layers that the file holds tensors for; each base weight is
  looked up in the base and its shape checked.
* **Reading** one module (on any worker): the skeleton again (cached per process), then only this
  module's base weight (float64, from :class:`~lab.checkpoints.loader.TensorLoader`), its adapter
  tensors and the model-level tensors the tuner shares between modules (VeRA's ``vera_A``/``vera_B``,
  RandLoRA's bases) are materialised, in float64; every other module stays on meta. ΔW is the
  tuner's ``get_delta_weight`` for the types where that is the additive update of an ``nn.Linear``
  (:data:`DELTA_WEIGHT`), else the module merged (on a copy of the layer) minus its base weight:
  OFT/BOFT/HRA/MiSS and IA3 change W multiplicatively, some ``get_delta_weight`` return a rotation,
  not ΔW, and for GPT-2's Conv1D the tuners disagree on the layout it comes in.

The general path's Delta is dense float64 in the (out, in) layout, of kind ``peft_type.lower()`` (``oft``,
``boft``, ...; see :data:`lab.deltas.KINDS`). Its ``params`` count the module's own adapter tensors;
tensors shared by all modules (VeRA's projections) are not counted per module.

Prompt-type methods (prompt, prefix, p-tuning, ...) learn no weight update: :data:`NO_WEIGHT_UPDATE`.

The path assumes what PEFT derives and does not save depends on shapes and the config, not on the
base weights' values (the skeleton has none). :data:`NEEDS_BASE_VALUES` lists the types known to
break that (refused with a one-line error); tests/checkpoints/test_peft_general.py runs every type
the installed PEFT can make on a tiny LLaMA and requires PEFT's update or a LabError, never a
silently different number.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from lab.checkpoints import fused
from lab.checkpoints.adapter_config import peft_type, shown
from lab.checkpoints.adapter_weights import PEFT_PREFIX
from lab.checkpoints.index import TensorIndex
from lab.checkpoints.loader import TensorLoader
from lab.checkpoints.naming import module_name, natural_key
from lab.checkpoints.peft_skeleton import (ADAPTER, first_line, is_conv1d, owner, peft_config, quiet, skeleton,
                                           skeleton_lock, tuner_layers)
from lab.checkpoints.records import Base, ModuleRead
from lab.checkpoints.safetensors_header import TensorInfo
from lab.deltas import KINDS
from lab.errors import FormatError, InputError, LabError, MatchError, ShapeError

# PEFT 0.21 types that add virtual tokens or prompts (or a KV cache) instead of changing a weight
NO_WEIGHT_UPDATE = frozenset({"PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING",
                              "ADAPTION_PROMPT", "CPT", "CARTRIDGE"})
# types whose tuner derives unsaved state from the base weights' values when it is created (FRoD's
# joint decomposition of the layers, OSF's orthogonal subspaces, PSOFT's frozen A and B from the SVD of W):
# the skeleton holds no weights, so the general path would be wrong for them, and it refuses them instead
NEEDS_BASE_VALUES = frozenset({"FROD", "OSF", "PSOFT"})
# types whose layer's get_delta_weight(adapter) is the additive ΔW of an nn.Linear, in its layout
# (checked against merge_and_unload − base in tests/checkpoints/test_peft_general.py); Conv1D
# modules and every other type take merged − base
DELTA_WEIGHT = frozenset({"ADALORA", "LOHA", "LOKR", "VERA", "FOURIERFT", "RANDLORA", "SHIRA"})


def check_peft_adapter(config: Path, ptype: str) -> None:
    """Cheap checks a non-LoRA adapter gets when discovered (the rest needs the base: :func:`plan_peft`)."""
    if ptype in NO_WEIGHT_UPDATE:
        raise FormatError(f"{config}: peft_type {ptype!r} learns prompts or virtual tokens, not weights: "
                          "no weight update to analyse")
    if ptype.lower() not in KINDS:
        raise FormatError(f"{config}: peft_type {shown(ptype)} is not a weight-modifying PEFT method lab knows; "
                          "lab reads LoRA, DoRA and the other weight-modifying types of PEFT 0.21")
    if ptype in NEEDS_BASE_VALUES:
        raise FormatError(f"{config}: peft_type {ptype!r} derives its update from the base weights' values when it is "
                          "loaded, which lab's general path (one module at a time, no whole model) does not do; "
                          f"no reader for {ptype} yet")
    peft_config(str(config), ptype)


@dataclass(frozen=True)
class PeftTensors:
    """What a worker needs for one module of a general-path adapter (picklable: paths and keys)."""

    peft_type: str
    config: str  # adapter_config.json
    base_config: str  # the base's config.json
    module: str  # the module's path in the model (PEFT's name, before lab's naming)
    tensors: tuple[TensorInfo, ...]  # this module's adapter tensors
    shared: tuple[TensorInfo, ...] = ()  # model-level tensors every module of the tuner uses
    params: int = 0  # elements of ``tensors``

    @property
    def files(self) -> list[str]:
        return [self.config, self.base_config] + [str(i.file) for i in self.tensors + self.shared]


def plan_peft(ckpt, base: Base | None, select: Callable[[str], bool], allow_nonfinite: bool,
              fmt: str) -> list[ModuleRead]:
    """The module reads of a general-path adapter (kind ``peft_type.lower()``); needs the base."""
    config, weights = ckpt.layout.config, ckpt.layout.weights[0]
    ptype = peft_type(config)
    check_peft_adapter(config, ptype)
    if base is None:
        raise InputError(f"{config}: this {ptype} adapter is read through PEFT on its base model "
                         "(its update depends on the base weights or the model): pass --base BASE")
    if base.config is None:
        raise InputError(f"{base.path}: no config.json; the {ptype} adapter {config.parent} is read by building "
                         "the base with PEFT, which needs the base's config.json")
    layers, shared = _check_file(str(config), str(base.config), ckpt.index, weights, ptype)
    out = []
    for peft_name, stored in layers.items():
        name = module_name(peft_name, base.model_type)
        conv1d = stored.conv1d
        shape = stored.shape[::-1] if conv1d else stored.shape
        chosen = fused.selected(fused.parts(name, shape[0]), select)
        if not chosen:
            continue
        tensors = stored.tensors
        out.append(ModuleRead(
            checkpoint=ckpt.name, format=fmt, module=name.module, layer=name.layer, role=name.role, kind=ptype.lower(),
            shape=shape, parts=chosen, base=_base_tensor(peft_name, stored.shape, base, weights),
            conv1d=conv1d, allow_nonfinite=allow_nonfinite,
            peft=PeftTensors(ptype, str(config), str(base.config), peft_name, tensors, shared,
                             sum(int(np.prod(i.shape)) for i in tensors)),
        ))
    return sorted(out, key=lambda r: natural_key(r.module))


@dataclass(frozen=True)
class _Layer:
    shape: tuple[int, int]  # the base weight as stored (Conv1D: (in, out))
    conv1d: bool
    tensors: tuple[TensorInfo, ...]


def _check_file(config: str, base_config: str, index: TensorIndex, weights: Path, ptype: str):
    """The adapted layers (PEFT name -> _Layer) and the shared tensors, every key loaded onto the skeleton."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    # before PEFT allocates anything: a file without the tuner's parameter names is another method's
    prefix = getattr(PEFT_TYPE_TO_TUNER_MAPPING.get(ptype), "prefix", None)
    if prefix and not any(part.startswith(prefix) for key in index.tensors for part in key.split(".")):
        raise FormatError(f"{weights}: holds no {ptype} tensors (names with '{prefix}…') although {config} says peft_type "
                          f"{ptype!r}; the weights and the config disagree")
    model, result = skeleton(config, base_config, str(weights))
    layers = tuner_layers(model)
    if result.unexpected_keys:
        key = result.unexpected_keys[0]
        raise FormatError(f"{weights}: tensor {_file_key(key, index)!r} is not a parameter of the {ptype} adapter that "
                          f"{Path(config).name} describes on this base; the file, the config or the base is wrong")
    found: dict[str, list[TensorInfo]] = {name: [] for name in layers}
    shared = []
    for key, info in index.tensors.items():
        layer_name = owner(key.removeprefix(PEFT_PREFIX), layers)
        if layer_name is None:
            shared.append(info)
        else:
            found[layer_name].append(info)
    out = {}
    for name, layer in layers.items():
        if not found[name]:
            raise FormatError(f"{weights}: no tensors for module '{name}', which {Path(config).name} targets; "
                              "the adapter is incomplete")
        weight = getattr(layer.get_base_layer(), "weight", None)
        if weight is None or weight.dim() != 2:
            continue  # a norm or bias-only layer (LN tuning): no 2-D weight update
        out[name] = _Layer(tuple(weight.shape), is_conv1d(layer.get_base_layer()), tuple(found[name]))
    return out, tuple(shared)


def _file_key(key: str, index: TensorIndex) -> str:
    """The file's spelling of a key PEFT reports (it inserts the adapter name)."""
    plain = key.replace(f".{ADAPTER}", "")
    return plain if plain in index else key


def _base_tensor(name: str, stored: tuple[int, int], base: Base, weights: Path) -> TensorInfo:
    wanted = f"{name}.weight"
    key = base.keys.find(wanted, weights)
    if key is None:
        raise MatchError(f"{base.path}: no tensor '{wanted}' for adapted module '{name}' of {weights}; "
                         "pass the base the adapter was trained on")
    info = base.index[key]
    if tuple(info.shape) != stored:
        raise ShapeError(f"{info.file}: tensor '{key}' is {list(info.shape)} but its config.json builds a "
                         f"{list(stored)} weight for '{name}' (adapter {weights}); the base's weights and config disagree")
    return info


# ---- reading one module ----

@contextmanager
def materialised(peft: PeftTensors, base: TensorInfo, loader: TensorLoader, allow_nonfinite: bool = False) -> Iterator:
    """The module's PEFT layer inside the cached skeleton with only its base weight, its adapter tensors
    and the shared tensors real (float64); they go back to meta (the weight to its placeholder) on exit."""
    import torch

    from peft.utils import set_peft_model_state_dict

    model, _ = skeleton(peft.config, peft.base_config, str(peft.tensors[0].file))
    with skeleton_lock:
        layer = tuner_layers(model)[peft.module]
        slots = _slots(layer)  # the layer's tensors as they are (meta, placeholders): put back on exit
        try:
            base_layer = layer.get_base_layer()
            base_layer.weight = torch.nn.Parameter(torch.from_numpy(loader.get(base, allow_nonfinite)), requires_grad=False)
            state = {info.key: _tensor(info, loader, allow_nonfinite) for info in peft.tensors + peft.shared}
            set_peft_model_state_dict(model, state, adapter_name=ADAPTER, low_cpu_mem_usage=True)
            layer = tuner_layers(model)[peft.module]
            yield layer.to(torch.float64)  # shared buffers PEFT copied the file into keep their float32
        finally:
            for table, name, tensor in slots:
                table[name] = tensor


def _slots(module) -> list:
    """(dict, name, tensor) of every parameter and buffer under ``module``, shared ones included."""
    return [(table, name, tensor) for owner in module.modules() for table in (owner._parameters, owner._buffers)
            for name, tensor in list(table.items())]


def _tensor(info: TensorInfo, loader: TensorLoader, allow_nonfinite: bool):
    """An adapter tensor: float64, or its integer dtype (SHiRA's indices: exact below 2⁵³)."""
    import torch

    array = loader.get(info, allow_nonfinite or not info.floating)
    tensor = torch.from_numpy(array)
    if info.floating:
        return tensor
    dtype = {"I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
             "BOOL": torch.bool}.get(info.dtype) or getattr(torch, str(info.dtype), torch.int64)
    return tensor.to(dtype)


def module_update(layer, peft_type: str) -> np.ndarray:
    """ΔW of one materialised layer in the base weight's stored layout, float64."""
    import torch

    with torch.no_grad():
        W = layer.get_base_layer().weight
        delta = None
        if peft_type in DELTA_WEIGHT and not is_conv1d(layer.get_base_layer()):  # Conv1D layouts differ by tuner
            delta = layer.get_delta_weight(ADAPTER)
            delta = delta.to_dense() if delta.is_sparse else delta  # SHiRA's is a sparse COO tensor
        if delta is None or tuple(delta.shape) != tuple(W.shape):
            work = copy.deepcopy(layer)  # the skeleton's layer is never merged
            work.merge(adapter_names=[ADAPTER])
            delta = work.get_base_layer().weight - W
        return delta.detach().to(torch.float64).numpy().copy()


@quiet
def read_peft(spec: ModuleRead, loader: TensorLoader, stream_bytes: int | None = None) -> tuple:
    """(ΔW (out, in), the base weight W (out, in), note) of one module of a non-LoRA PEFT adapter, float64:
    dense ΔW computed by PEFT on the module materialised in the skeleton (the general path; the types
    with a structured reader come here only for a module their reader leaves, see
    :data:`lab.checkpoints.formats.FORMATS`)."""
    peft = spec.peft
    try:
        with materialised(peft, spec.base, loader, spec.allow_nonfinite) as layer:
            W = layer.get_base_layer().weight.detach().numpy().copy()
            delta = module_update(layer, peft.peft_type)
    except LabError:
        raise
    except Exception as e:  # PEFT failing on this module's tensors
        raise FormatError(f"{peft.tensors[0].file}: PEFT could not compute the {peft.peft_type} update of "
                          f"'{peft.module}' ({first_line(e)})") from None
    if spec.conv1d:
        delta, W = delta.T, W.T
    if not spec.allow_nonfinite and not np.isfinite(delta).all():
        raise FormatError(f"{peft.tensors[0].file}: the {peft.peft_type} update of '{peft.module}' is not finite "
                          "in float64; pass --allow-nonfinite to analyse it anyway")
    return np.ascontiguousarray(delta), np.ascontiguousarray(W), f"{peft.peft_type.lower()}: dense ΔW through PEFT"
