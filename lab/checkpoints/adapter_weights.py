"""The modules of a PEFT LoRA weight file: which tensors are whose factors, checked against r.

PEFT saves ``base_model.model.<module>.lora_A.weight`` (r × in), ``...lora_B.weight``
(out × r), for embeddings ``...lora_embedding_A`` (r × num_embeddings) and
``...lora_embedding_B`` (embedding_dim × r), and for DoRA ``...lora_magnitude_vector``
(one entry per row of ``lora_B``/``lora_embedding_B``). Some saves keep the adapter name
(``lora_A.default.weight``) or a ``.weight`` on the magnitude; both are read. Other entries
(``lora_B.bias`` of ``lora_bias``, ``base_layer.weight`` copies of embeddings,
``modules_to_save``) are not low-rank updates and are left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lab.checkpoints.adapter_config import AdapterConfig
from lab.checkpoints.index import TensorIndex
from lab.checkpoints.naming import layer_index
from lab.checkpoints.safetensors_header import TensorInfo
from lab.errors import FormatError, ShapeError

PEFT_PREFIX = "base_model.model."
WEIGHT_NAMES = ("adapter_model.safetensors", "adapter_model.bin")  # PEFT prefers safetensors

_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+?)\."
    r"(?P<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)"
    r"(?:\.(?P<adapter>(?!(?:weight|bias)$)[^.]+))?(?:\.weight)?$"
)
_PARTS = {"lora_A": "A", "lora_B": "B", "lora_embedding_A": "A", "lora_embedding_B": "B", "lora_magnitude_vector": "magnitude"}


@dataclass(frozen=True)
class AdapterModule:
    """One adapted module: its factor tensors (not read) and the shape of its update."""

    module: str
    embedding: bool
    A: TensorInfo  # lora_A (r, in) or lora_embedding_A (r, num_embeddings)
    B: TensorInfo  # lora_B (out, r) or lora_embedding_B (embedding_dim, r)
    magnitude: TensorInfo | None = None  # DoRA: one entry per row of B

    @property
    def shape(self) -> tuple[int, int]:
        """ΔW's shape: (out, in), or the embedding's stored (num_embeddings, embedding_dim)."""
        if self.embedding:
            return (self.A.shape[1], self.B.shape[0])
        return (self.B.shape[0], self.A.shape[1])


def adapter_modules(index: TensorIndex) -> list[AdapterModule]:
    """The adapted modules of a weight file; FormatError when a factor lacks its partner."""
    found: dict[str, dict[str, TensorInfo]] = {}
    kinds: dict[str, set[bool]] = {}
    adapters: set[str] = set()
    for key, info in index.tensors.items():
        match = _KEY.match(key)
        if not match:
            continue
        module, part = match["module"], match["part"]
        adapters.add(match["adapter"] or "")
        slot = _PARTS[part]
        if slot in found.setdefault(module, {}):
            raise FormatError(f"{info.file}: module '{module}' has two {part} tensors ('{found[module][slot].key}', '{key}')")
        found[module][slot] = info
        if slot != "magnitude":
            kinds.setdefault(module, set()).add(part.startswith("lora_embedding"))
    if len(adapters) > 1:
        raise FormatError(f"{index.files[0]}: holds several adapters ({', '.join(sorted(a or '(unnamed)' for a in adapters))}); save one at a time")
    modules = []
    for module, parts in found.items():
        missing = [p for p in ("A", "B") if p not in parts]
        if missing:
            some = next(iter(parts.values()))
            raise FormatError(f"{some.file}: module '{module}' has no lora_{missing[0]} tensor (found '{some.key}'); the adapter is incomplete")
        if len(kinds[module]) > 1:
            raise FormatError(f"{parts['A'].file}: module '{module}' mixes lora_A/B and lora_embedding_A/B tensors")
        modules.append(AdapterModule(module, kinds[module].pop(), parts["A"], parts["B"], parts.get("magnitude")))
    return modules


def check_modules(modules: list[AdapterModule], config: AdapterConfig, weights: Path) -> None:
    """Factor shapes against r (rank_pattern aware), DoRA magnitudes, layers_to_transform.

    Raises ShapeError or FormatError naming the file and tensor. A factor pair for a layer
    outside ``layers_to_transform`` is refused: PEFT would silently drop it when loading, so
    the file and its config disagree and neither reading would be safe to report.
    """
    if not modules:
        raise FormatError(f"{weights}: no LoRA factors (lora_A/lora_B tensors) found")
    for m in modules:
        r = config.rank(m.module)
        for info, axis in ((m.A, 0), (m.B, 1)):
            if len(info.shape) != 2:
                raise ShapeError(f"{info.file}: tensor '{info.key}' has shape {list(info.shape)}; LoRA factors are 2-D")
            if not info.floating:  # integer or boolean factors are a damaged or foreign file, not a LoRA
                raise FormatError(f"{info.file}: tensor '{info.key}' is {info.dtype}; LoRA factors are floating point")
            if info.shape[axis] != r:
                raise ShapeError(
                    f"{info.file}: tensor '{info.key}' has shape {list(info.shape)} but r = {r} for '{m.module}' "
                    f"in {config.path.name}; the factors and the config disagree"
                )
        if config.use_dora:
            if m.magnitude is None:
                raise FormatError(
                    f"{weights}: use_dora is set in {config.path.name} but module '{m.module}' has no lora_magnitude_vector; "
                    "the weights and the config disagree"
                )
            if not m.magnitude.floating:
                raise FormatError(f"{m.magnitude.file}: tensor '{m.magnitude.key}' is {m.magnitude.dtype}; DoRA magnitudes are floating point")
            if m.magnitude.shape != (m.B.shape[0],):
                raise ShapeError(
                    f"{m.magnitude.file}: tensor '{m.magnitude.key}' has shape {list(m.magnitude.shape)}, "
                    f"expected [{m.B.shape[0]}] (one magnitude per row of '{m.B.key}')"
                )
        layer = layer_index(m.module)
        if config.layers_to_transform is not None and layer is not None and layer not in config.layers_to_transform:
            raise FormatError(
                f"{m.A.file}: tensor '{m.A.key}' adapts layer {layer}, but layers_to_transform in {config.path.name} "
                f"is {list(config.layers_to_transform)}; PEFT would drop it, so fix the config or the file"
            )
