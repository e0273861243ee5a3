"""What a safetensors file holds (names, shapes, dtypes), read from its header alone.

The format (https://github.com/huggingface/safetensors): 8 bytes little-endian header length
N, N bytes of JSON ``{key: {"dtype", "shape", "data_offsets": [begin, end]}}``, then the data
buffer. Checking the header against the file size finds truncated and corrupt files before
any tensor is read, and names the tensor that is cut off.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from lab.errors import FormatError

# bytes per element for each safetensors dtype
ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}
FLOATING = frozenset({"F8_E4M3", "F8_E5M2", "F16", "BF16", "F32", "F64"})
_MAX_HEADER = 100_000_000  # safetensors itself refuses headers above 100 MB


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives and what it is, without its data."""

    key: str
    file: Path
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype name (F32, BF16, ...), or torch's for .bin files
    floating: bool


def read_header(path: Path) -> dict[str, TensorInfo]:
    """The tensors of a safetensors file by key, after checking the header against the file size.

    Raises FormatError naming the file (and tensor) for a truncated or corrupt file.
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise FormatError(f"{path}: truncated safetensors file ({size} bytes, no header); re-save or re-download it")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise FormatError(
                f"{path}: truncated safetensors file (header says {n} bytes, file has {size - 8}); re-save or re-download it"
            )
        if n > _MAX_HEADER:
            raise FormatError(f"{path}: corrupt safetensors header (length {n} bytes); re-save or re-download it")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}: corrupt safetensors header (not JSON: {e}); re-save or re-download it") from None
    if not isinstance(header, dict):
        raise FormatError(f"{path}: corrupt safetensors header (not a JSON object); re-save or re-download it")
    buffer = size - 8 - n
    tensors: dict[str, TensorInfo] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        tensors[key] = _entry(path, key, entry, buffer)
    return tensors


def _entry(path: Path, key: str, entry: object, buffer: int) -> TensorInfo:
    """One header entry checked for type, size and bounds."""
    try:
        dtype = entry["dtype"]
        shape = tuple(int(d) for d in entry["shape"])
        begin, end = (int(o) for o in entry["data_offsets"])
        itemsize = ITEMSIZE[dtype]
    except (TypeError, KeyError, ValueError):
        raise FormatError(f"{path}: corrupt safetensors header entry for tensor '{key}'; re-save or re-download it") from None
    if end > buffer:
        raise FormatError(
            f"{path}: truncated safetensors file: tensor '{key}' ends at byte {end} of a {buffer}-byte data buffer; "
            "re-save or re-download it"
        )
    if begin < 0 or end - begin != math.prod(shape) * itemsize:
        raise FormatError(
            f"{path}: corrupt safetensors header: tensor '{key}' {dtype}{list(shape)} does not fit offsets [{begin}, {end}]"
        )
    return TensorInfo(key, path, shape, dtype, dtype in FLOATING)
