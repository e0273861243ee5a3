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
    except (ValueError, RecursionError) as e:  # also ints over 4300 digits and too deep nesting
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e).splitlines()[0]
        raise FormatError(f"{path}: corrupt safetensors header (not JSON: {reason}); re-save or re-download it") from None
    if not isinstance(header, dict):
        raise FormatError(f"{path}: corrupt safetensors header (not a JSON object); re-save or re-download it")
    buffer = size - 8 - n
    tensors: dict[str, TensorInfo] = {}
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        tensors[key] = _entry(path, key, entry, buffer)
    return tensors


def check_key(path: Path, key: str) -> None:
    """FormatError for a tensor name no checkpoint has: control characters (a newline would also
    split every message that quotes the name) or nothing at all."""
    if not key or any(ch < " " or ch == "\x7f" for ch in key):
        raise FormatError(f"{path}: tensor name {key!r} is empty or holds control characters; the file is corrupt")


def _count(value: object) -> bool:
    """A JSON integer that can count bytes or elements (not a bool, a float or a negative)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entry(path: Path, key: str, entry: object, buffer: int) -> TensorInfo:
    """One header entry checked for type, size and bounds.

    The types are checked as the format defines them (dtype a known name, shape a list of
    non-negative integers, data_offsets two of them): converting with ``int()`` would take
    "4" and 4.5, fail on Infinity and let negative dimensions multiply to a valid size.
    """
    check_key(path, key)
    dtype = entry.get("dtype") if isinstance(entry, dict) else None
    shape = entry.get("shape") if isinstance(entry, dict) else None
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if (not isinstance(dtype, str) or dtype not in ITEMSIZE or not isinstance(shape, list) or not all(map(_count, shape))
            or not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_count, offsets))):
        raise FormatError(
            f"{path}: corrupt safetensors header entry for tensor '{key}' (expected a known dtype, a shape of "
            "non-negative integers and two data offsets); re-save or re-download it"
        )
    shape, (begin, end), itemsize = tuple(shape), offsets, ITEMSIZE[dtype]
    if end > buffer:
        raise FormatError(
            f"{path}: truncated safetensors file: tensor '{key}' ends at byte {end} of a {buffer}-byte data buffer; "
            "re-save or re-download it"
        )
    if end - begin != math.prod(shape) * itemsize:
        raise FormatError(
            f"{path}: corrupt safetensors header: tensor '{key}' {dtype}{list(shape)} does not fit offsets [{begin}, {end}]"
        )
    return TensorInfo(key, path, shape, dtype, dtype in FLOATING)
