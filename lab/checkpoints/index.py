"""Which file holds each tensor of a checkpoint, and its shape and dtype, without reading data.

Built from a sharded checkpoint's ``*.index.json`` (checked against every shard's header) or
from the files themselves. Knowing *where* a tensor is stays apart from *getting* it
(``lab.checkpoints.loader``), as in mergekit's ``io/lazy_tensor_loader.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lab.checkpoints.pickled import load_state_dict
from lab.checkpoints.safetensors_header import TensorInfo, check_key, read_header
from lab.errors import FormatError


@dataclass
class TensorIndex:
    """Tensors by key, and every file the index was built from (weights and index json)."""

    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def __contains__(self, key: str) -> bool:
        return key in self.tensors

    def __getitem__(self, key: str) -> TensorInfo:
        return self.tensors[key]

    def keys(self) -> list[str]:
        return list(self.tensors)

    @classmethod
    def from_files(cls, paths: list[Path]) -> TensorIndex:
        """The index of unsharded weight files (``.safetensors`` headers, or ``.bin`` pickles)."""
        index = cls()
        for path in paths:
            index._add(path, read_file_tensors(path))
        return index

    @classmethod
    def from_index_json(cls, path: Path) -> TensorIndex:
        """The index of a sharded checkpoint: ``weight_map`` (key -> shard) checked against the shards.

        Shard names are file names relative to the index's folder (subfolders allowed) with a
        weight-file suffix; an absolute name or one climbing out with ``..`` is refused, so the
        files a run reads (and hashes into its manifest) are the checkpoint's own.
        """
        path = Path(path)
        weight_map = _weight_map(path)
        index = cls(files=[path])
        for shard_name in dict.fromkeys(weight_map.values()):  # shards in first-mention order
            first = next(k for k, v in weight_map.items() if v == shard_name)
            shard = path.parent / _shard_path(path, shard_name, first)
            if not shard.is_file():
                raise FormatError(
                    f"{path}: shard {shard_name!r} (holding tensor '{first}') is missing; copy the complete checkpoint"
                )
            tensors = read_file_tensors(shard)
            for key, name in weight_map.items():
                if name == shard_name and key not in tensors:
                    raise FormatError(f"{shard}: tensor '{key}' is named in {path.name} but absent from the shard")
            index._add(shard, {k: v for k, v in tensors.items() if weight_map.get(k) == shard_name})
        return index

    def _add(self, path: Path, tensors: dict[str, TensorInfo]) -> None:
        self.files.append(Path(path))
        for key, info in tensors.items():
            if key in self.tensors:
                raise FormatError(f"{path}: tensor '{key}' also appears in {self.tensors[key].file.name}")
            self.tensors[key] = info


def read_file_tensors(path: Path) -> dict[str, TensorInfo]:
    """The tensors of one weight file: a safetensors header, or a pickle loaded memory-mapped."""
    path = Path(path)
    if path.suffix == ".safetensors":
        tensors = read_header(path)
        if not tensors:  # an empty header: nothing to pair, and "shares no weight with the base" would blame the base
            raise FormatError(f"{path}: holds no tensors (its safetensors header lists none); re-save or re-download it")
        return tensors
    return {
        key: TensorInfo(key, path, tuple(t.shape), str(t.dtype).removeprefix("torch."), t.is_floating_point())
        for key, t in load_state_dict(path).items()
    }


SHARD_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def _weight_map(path: Path) -> dict[str, str]:
    """The non-empty ``weight_map`` of an index json, every key a tensor name and every value a string."""
    invalid = f"{path}: not a valid index (expected JSON with a 'weight_map' of tensor -> shard file)"
    try:
        raw = json.loads(path.read_bytes())
    except (ValueError, RecursionError):  # also ints over 4300 digits and too deep nesting
        raise FormatError(invalid) from None
    weight_map = raw.get("weight_map") if isinstance(raw, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise FormatError(invalid)
    if not weight_map:
        raise FormatError(f"{path}: the 'weight_map' is empty; copy the complete checkpoint")
    for key in weight_map:
        check_key(path, key)
    return weight_map


def _shard_path(path: Path, name: str, first: str) -> Path:
    """``name`` as a relative path inside the index's folder; FormatError naming the index otherwise."""
    shard = Path(name)
    if (not name or any(ch < " " or ch == "\x7f" for ch in name) or shard.is_absolute() or ".." in shard.parts
            or shard.suffix not in SHARD_SUFFIXES):
        raise FormatError(
            f"{path}: shard {name!r} (holding tensor '{first}') is not a weight file inside the checkpoint folder; "
            f"the index names shards by file name ({', '.join(SHARD_SUFFIXES)})"
        )
    return shard
