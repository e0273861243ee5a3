"""What the probes computed about a base tensor W, kept on disk so a sweep decomposes each W once.

N checkpoints of one base (a training output's steps, a folder of adapters, the demo's runs) pair
every module with the same W. The probes keep what they compute about W itself (its leading and
full singular triplets, its singular values, the eigenvalues of its shuffled copy, its small-side
Gram and their eigenvalues, its entanglement profile's entropies at every cut) in W's memo
(:mod:`lab.kernels.memo`), keyed by what was computed, so the other probes of the same unit reuse
it. This module makes that memo outlive the unit: before a unit runs, the entries already stored
for its W are put into the memo of the W it read; after, the new ones are stored. Every memo entry of
W is a function of W's values alone (and of the parameters in its key), which is what makes this sound.

Where: ``<out>/.lab-cache/base/`` beside the run folders, so a resumed run, every Dask worker (which
sees the same filesystem, as it must for the inputs) and the other runs of the same ``out`` folder
(the demo's) find the entries. Content-addressed: an entry's folder is named by a hash of the base
file's sha256 (computed by the driver for the manifest), the tensor's key, its layout (a Conv1D's
transpose, a fused projection's row block) and a fingerprint of what can change the last bits of
a result (the streaming threshold, a hash of the source of ``lab/kernels`` and ``lab/probes``,
and the versions of lab, numpy, scipy and torch). A changed
file, another tensor or another setting is another address; nothing is ever invalidated.

Never trusted blindly: an entry is one file holding a JSON header (its address, its memo key, and per
array the dtype, shape, memory order and CRC-32 of its bytes) and the arrays' bytes. A file that
does not read whole, or whose header or a CRC does not match, is ignored (the probe recomputes) and replaced by
the recomputed entry. Files are written under a unique temporary name and renamed into place, so a
reader never sees half a file, and two processes storing the same entry store the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lab.fingerprint import source_digest, versions
from lab.kernels.memo import PURE

CACHE_DIR = Path(".lab-cache") / "base"
SOURCE_FOLDERS = ("kernels", "probes")  # folders of lab whose source the fingerprint hashes
SUFFIX = ".entry"
_FORMAT = 2


@dataclass
class CacheStats:
    """Entries of one unit: found valid on disk, stored after the probes made them, found unusable."""

    hits: int = 0
    stored: int = 0
    rejected: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"hits": self.hits, "stored": self.stored, "rejected": self.rejected}


@dataclass(frozen=True)
class BaseCache:
    """Where the base tensors' entries live and the sha256 of every base file (picklable: paths and strings)."""

    folder: str
    digests: dict[str, str] = field(default_factory=dict)  # base file path (resolved) -> sha256
    fingerprint: str = ""

    def address(self, tensor, conv1d: bool = False, rows: tuple[int, int] | None = None) -> str | None:
        """The entry folder's name for W = ``tensor`` (a TensorInfo: file and key) in the layout the
        Delta holds it; None when the file's sha256 is not known (nothing is cached then)."""
        digest = self.digests.get(str(Path(tensor.file).resolve()))
        if digest is None:
            return None
        what = json.dumps([_FORMAT, digest, tensor.key, bool(conv1d), list(rows) if rows else None, self.fingerprint])
        return hashlib.sha256(what.encode()).hexdigest()[:40]

    def path(self, address: str, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        return Path(self.folder) / address[:2] / address / f"{safe}{SUFFIX}"

    def load(self, address: str, memo: dict[str, Any], stats: CacheStats) -> set[str]:
        """Put every valid stored entry of ``address`` into ``memo`` (keys it already has win); the keys put."""
        folder = Path(self.folder) / address[:2] / address
        put: set[str] = set()
        try:
            files = sorted(folder.glob(f"*{SUFFIX}"))
        except OSError:
            return put
        for file in files:
            entry = read_entry(file, address)
            if entry is None:
                stats.rejected += 1
                continue
            key, value = entry
            if key.startswith(PURE) and key not in memo:
                memo[key] = value
                put.add(key)
                stats.hits += 1
        return put

    def store(self, address: str, memo: dict[str, Any], known: set[str], stats: CacheStats) -> None:
        """Store the entries of ``memo`` made by :func:`lab.kernels.memo.pure` that were not loaded (``known``)
        and are arrays or tuples of arrays (the other entries may depend on which probe ran first)."""
        for key, value in list(memo.items()):
            if key in known or not key.startswith(PURE) or _arrays(value) is None:
                continue
            try:
                write_entry(self.path(address, key), address, key, value)
            except OSError:  # a full disk or a read-only folder: the run goes on without the entry
                continue
            stats.stored += 1


def fingerprint(stream_bytes: int | None) -> str:
    """What besides W can change a cached result's last bits: the streaming threshold (it decides
    how a Gram is accumulated), the source of the kernels and the probes (a changed kernel is a new
    address, so an entry never outlives the code that computed it) and the versions of the packages
    that compute."""
    parts = [f"stream_bytes={stream_bytes}", f"probes={source_digest(SOURCE_FOLDERS)}"]
    return ";".join(parts + versions(("lab", "numpy", "scipy", "torch")))


def cache_for(out: Path, base_files: list[dict[str, Any]], stream_bytes: int | None) -> BaseCache:
    """The cache of runs written under ``out``, for base files described as the manifest does
    (``{"path", "size", "sha256"}``)."""
    digests = {str(Path(f["path"]).resolve()): f["sha256"] for f in base_files if f.get("sha256")}
    return BaseCache(str((Path(out) / CACHE_DIR).resolve()), digests, fingerprint(stream_bytes))


# ---- one entry ------------------------------------------------------------------------------------
#
# b"LABW" | header length (u32, little-endian) | header (JSON) | the arrays' bytes, one after the other
#
# The header names the entry's address and memo key, and per array its dtype, shape, memory order and
# the CRC-32 of its bytes. Read with one readinto per array: a reused MiniLM 1536×384 entry (W's
# full U, σ, V: 5.9 MB) loads in ~8 ms, where as an .npz (a zip member read and CRC-checked in Python)
# it took ~30 ms, a fifth of its unit.

_MAGIC = b"LABW"
_LEN = struct.Struct("<I")


def _storable(a: Any) -> bool:
    # C or Fortran order only, and read back in that order: BLAS then sees the same operands as when
    # the value was computed (an eigensolver's vectors are Fortran-ordered; a product with a C-ordered
    # copy of them can differ in the last bit)
    return isinstance(a, np.ndarray) and a.dtype.kind in "fiub" and (a.flags.c_contiguous or a.flags.f_contiguous)


def _arrays(value: Any) -> tuple[list[np.ndarray], bool] | None:
    """(arrays, whether the value is a tuple) for what can be stored, else None."""
    if _storable(value):
        return [value], False
    if isinstance(value, tuple) and value and all(_storable(v) for v in value):
        return list(value), True
    return None


def _flat(a: np.ndarray) -> memoryview:
    """The array's bytes in memory order (a Fortran-ordered array's transpose is C-ordered)."""
    c = a if a.flags.c_contiguous else a.T
    return memoryview(c.reshape(-1)).cast("B")


def write_entry(path: Path, address: str, key: str, value: Any) -> None:
    """Write one entry atomically: a temporary file in the same folder, renamed into place."""
    arrays, is_tuple = _arrays(value)
    specs = [{"dtype": a.dtype.str, "shape": list(a.shape), "order": "C" if a.flags.c_contiguous else "F",
              "crc32": zlib.crc32(_flat(a))} for a in arrays]
    header = json.dumps({"format": _FORMAT, "address": address, "key": key, "tuple": is_tuple, "arrays": specs}).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + _LEN.pack(len(header)) + header)
            for a in arrays:
                f.write(_flat(a))
        os.replace(tmp, path)
    except BaseException:
        with _quiet():
            os.unlink(tmp)
        raise


def read_entry(path: Path, address: str) -> tuple[str, Any] | None:
    """(memo key, value) of a valid entry file of ``address``, or None for anything else: a file that
    does not read (truncated, longer than its header says, not an entry), a header for another address
    or format, or an array whose CRC-32 differs from the header's."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_MAGIC) + _LEN.size)
            if len(head) != len(_MAGIC) + _LEN.size or head[: len(_MAGIC)] != _MAGIC:
                return None
            header = json.loads(f.read(_LEN.unpack(head[len(_MAGIC):])[0]).decode())
            if not isinstance(header, dict) or header.get("format") != _FORMAT or header.get("address") != address:
                return None
            arrays = []
            for spec in header["arrays"]:
                shape = tuple(int(n) for n in spec["shape"])
                a = np.empty(shape, dtype=np.dtype(spec["dtype"]), order="F" if spec["order"] == "F" else "C")
                buf = _flat(a)
                if f.readinto(buf) != buf.nbytes or zlib.crc32(buf) != spec["crc32"]:
                    return None
                arrays.append(a)
            if f.read(1):
                return None
    except (OSError, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError, struct.error):
        return None
    if not arrays or not isinstance(header.get("key"), str):
        return None
    return header["key"], (tuple(arrays) if header.get("tuple") else arrays[0])


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, kind, *rest) -> bool:
        return kind is not None and issubclass(kind, OSError)
