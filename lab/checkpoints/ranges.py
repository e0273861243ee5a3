"""One tensor of a ``.safetensors`` file as a :class:`~lab.sources.MatrixSource`: byte ranges by ``os.pread``.

A safetensors file is 8 bytes of little-endian header length N, N bytes of JSON giving each
tensor's ``data_offsets`` [begin, end) within the data buffer, then the buffer, which starts at
byte 8 + N. Element e of a 2-D tensor (row-major, as ψ is) therefore sits at byte
8 + N + begin + e·itemsize, and a range of ψ is one contiguous byte range.

Why ``pread`` on a plain file descriptor and not the memory map of ``safe_open``: every page of
a map that is touched counts toward the process's resident memory until it is unmapped, so
streaming a 0.5 GB bf16 embedding through a map ends up "using" 0.5 GB, while bytes read with
``pread`` go through the kernel's page cache, which is not charged to the process. Only the
requested ranges are read (ranges that follow each other in the file are merged into one
``pread``), converted to float64 exactly (every F64/F32/F16/BF16/F8 value is a float64 value):

* F64, F32, F16 with numpy; BF16 as its 16 bits placed in the high half of a float32 (that is
  what bf16 is), converted in slices so the only full-size array is the float64 result;
* F8_E4M3 (torch's ``float8_e4m3fn``) and F8_E5M2 with torch, which defines those formats.

Integer and boolean tensors are refused (FormatError): they are not weights lab analyses.

A source holds the path and offsets only, never an open file: each ``read`` opens the file,
reads, and closes it again (a few microseconds next to a block of megabytes), so sources pickle
to Dask workers, are never leaked, and never keep a deleted or replaced file alive.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from lab.checkpoints.safetensors_header import ITEMSIZE, TensorInfo, read_header
from lab.errors import FormatError, InputError, ShapeError
from lab.sources import BlockSource, runs

_NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2"}
_TORCH = {"F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
READABLE = frozenset({"F64", "F32", "F16", "BF16", *_TORCH})
_SLICE = 1 << 18  # elements converted at a time from BF16: the temporary stays at 1 MiB


def data_offsets(path: Path | str) -> dict[str, tuple[int, int]]:
    """{key: (first byte, end byte)} of every tensor's data, as absolute positions in the file.

    Cached per (path, size, modification time): a file is parsed once however many of its
    tensors are read, and again if it changes. The header is assumed already checked by
    :func:`lab.checkpoints.safetensors_header.read_header` (as :class:`TensorRanges` does).
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        raise InputError(f"{path}: cannot read the file ({e.strerror})") from None
    return dict(_offsets(str(path), st.st_size, st.st_mtime_ns))


@lru_cache(maxsize=64)
def _offsets(path: str, size: int, mtime_ns: int) -> tuple[tuple[str, tuple[int, int]], ...]:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n).decode("utf-8"))
    start = 8 + n
    return tuple(
        (key, (start + int(e["data_offsets"][0]), start + int(e["data_offsets"][1])))
        for key, e in header.items()
        if key != "__metadata__"
    )


class TensorRanges(BlockSource):
    """A 2-D floating tensor of a safetensors file, read as float64 ranges of its row-major elements.

    ``info`` comes from :func:`lab.checkpoints.safetensors_header.read_header` (or an index
    built on it). Raises FormatError for a dtype lab cannot read, ShapeError for a tensor that
    is not 2-D; a read that finds the file shorter than indexed raises FormatError naming the
    file and tensor.
    """

    def __init__(self, info: TensorInfo) -> None:
        path = Path(info.file)
        if path.suffix != ".safetensors":
            raise FormatError(f"{path}: tensor '{info.key}' is not in a .safetensors file; ranges need one")
        _check_readable(info)
        if len(info.shape) != 2:
            raise ShapeError(f"{path}: tensor '{info.key}' has shape {list(info.shape)}; a matrix source needs 2-D")
        offsets = data_offsets(path)
        if info.key not in offsets:
            raise FormatError(f"{path}: no tensor '{info.key}' in the file (changed since it was indexed?)")
        self.path = str(path)
        self.key = info.key
        self.dtype = info.dtype
        self.offset = offsets[info.key][0]
        self.shape = (int(info.shape[0]), int(info.shape[1]))
        self.name = f"{path}: tensor '{info.key}'"

    @classmethod
    def open(cls, path: Path | str, key: str) -> TensorRanges:
        """The source for tensor ``key`` of the file at ``path`` (header checked first)."""
        tensors = read_header(Path(path))
        if key not in tensors:
            raise FormatError(f"{path}: no tensor '{key}' in the file; its tensors are e.g. {sorted(tensors)[:5]}")
        return cls(tensors[key])

    def _read(self, starts: np.ndarray, length: int) -> np.ndarray:
        return _read_ranges(self.path, self.name, self.dtype, self.offset, starts, length)


def read_array(info: TensorInfo) -> np.ndarray:
    """A whole floating tensor of a safetensors file (any shape) as float64, read with ``pread``
    and converted exactly as :class:`TensorRanges` does.

    This is how :class:`~lab.checkpoints.loader.TensorLoader` reads a tensor it hands out whole:
    no memory map (whose touched pages count as the process's memory while the file is open)
    and no torch (whose import costs a fresh Dask worker seconds) for F64/F32/F16/BF16.
    """
    _check_readable(info)
    path = Path(info.file)
    name = f"{path}: tensor '{info.key}'"
    offsets = data_offsets(path)
    if info.key not in offsets:
        raise FormatError(f"{name} is no longer in the file; was it re-saved during the run?")
    begin, end = offsets[info.key]
    count = (end - begin) // ITEMSIZE[info.dtype]
    return _read_ranges(str(path), name, info.dtype, begin, np.zeros(1, np.int64), count).reshape(info.shape)


def _check_readable(info: TensorInfo) -> None:
    if info.dtype not in READABLE:
        raise FormatError(
            f"{info.file}: tensor '{info.key}' has dtype {info.dtype}; lab reads only {', '.join(sorted(READABLE))}"
        )


def _read_ranges(path: str, name: str, dtype: str, offset: int, starts: np.ndarray, length: int) -> np.ndarray:
    """X (len(starts) × length, float64): X[t] holds the ``length`` elements from element ``starts[t]`` of
    the tensor whose data begins at byte ``offset`` of the file (ranges that follow each other: one pread)."""
    n, size = starts.size, ITEMSIZE[dtype]
    raw = np.empty(n * length * size, dtype=np.uint8)
    # F64 needs no conversion: read straight into the result's memory
    out = raw.view("<f8").reshape(n, length) if dtype == "F64" else np.empty((n, length), np.float64)
    if n == 0 or length == 0:
        return out
    view = memoryview(raw)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise InputError(f"{name}: cannot open the file ({e.strerror})") from None
    try:
        for t0, t1 in runs(starts, length):
            _pread(fd, view[t0 * length * size : t1 * length * size], offset + int(starts[t0]) * size, name)
    finally:
        os.close(fd)
    if dtype != "F64":
        _convert(raw, dtype, out.reshape(-1))
    return out


def _pread(fd: int, buf: memoryview, at: int, name: str) -> None:
    """Fill ``buf`` from byte ``at`` on (a pread may return less than asked: loop)."""
    got = 0
    while got < len(buf):
        k = _preadv(fd, buf[got:], at + got)
        if k == 0:
            raise FormatError(
                f"{name}: the file ends before byte {at + len(buf)} (truncated since it was indexed?); "
                "re-save or re-download it"
            )
        got += k


def _preadv(fd: int, buf: memoryview, at: int) -> int:
    if hasattr(os, "preadv"):  # straight into the buffer
        return os.preadv(fd, [buf], at)
    data = os.pread(fd, len(buf), at)  # platforms without preadv: one extra copy
    buf[: len(data)] = data
    return len(data)


def _convert(raw: np.ndarray, dtype: str, out: np.ndarray) -> None:
    """The little-endian values in ``raw`` (bytes) written exactly into the float64 ``out``."""
    if dtype in _NUMPY:
        np.copyto(out, raw.view(_NUMPY[dtype]))  # the cast is buffered: no full-size temporary
    elif dtype == "BF16":
        bits = raw.view("<u2")
        for a in range(0, bits.size, _SLICE):
            wide = bits[a : a + _SLICE].astype(np.uint32)
            wide <<= 16  # bf16 is the high half of a float32
            out[a : a + _SLICE] = wide.view(np.float32)
    else:
        import torch  # only for the F8 formats, which numpy does not have

        torch.from_numpy(out).copy_(torch.frombuffer(raw, dtype=getattr(torch, _TORCH[dtype])))
