"""What the probes computed about a base tensor W, kept on disk so a sweep decomposes each W once.

N checkpoints of one base (a training output's steps, a folder of adapters, the demo's runs) pair
every module with the same W. The probes keep what they compute about W itself (its leading and
full singular triplets, its singular values, the eigenvalues of its shuffled copy, its small-side
Gram and their eigenvalues) in W's memo (:mod:`lab.probes.memo`), keyed by what was computed, so
the other probes of the same unit reuse it. This module makes that memo outlive the unit: before a
unit runs, the entries already stored for its W are put into the memo of the W it read; after,
the new ones are stored. Every memo entry of W is a function of W's values alone (and of the
parameters in its key), which is what makes this sound.

Where: ``<out>/.lab-cache/base/`` beside the run folders, so a resumed run, every Dask worker (which
sees the same filesystem, as it must for the inputs) and the other runs of the same ``out`` folder
(the demo's) find the entries. Content-addressed: an entry's folder is named by a hash of the base
file's sha256 (computed by the driver for the manifest), the tensor's key, its layout (a Conv1D's
transpose, a fused projection's row block) and a fingerprint of what can change the last bits of
a result (the streaming threshold and the versions of lab, numpy, scipy and torch). A changed
file, another tensor or another setting is another address; nothing is ever invalidated.

Never trusted blindly: an entry is one ``.npz`` file holding its arrays and a JSON header with its
address, its memo key and a CRC-32 of the arrays' dtypes, shapes and bytes. A file that does not
load, or whose header or digest does not match, is ignored (the probe recomputes) and replaced by
the recomputed entry. Files are written under a unique temporary name and renamed into place, so a
reader never sees half a file, and two processes storing the same entry store the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lab.probes.memo import PURE

CACHE_DIR = Path(".lab-cache") / "base"
_FORMAT = 1


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
        return Path(self.folder) / address[:2] / address / f"{safe}.npz"

    def load(self, address: str, memo: dict[str, Any], stats: CacheStats) -> set[str]:
        """Put every valid stored entry of ``address`` into ``memo`` (keys it already has win); the keys put."""
        folder = Path(self.folder) / address[:2] / address
        put: set[str] = set()
        try:
            files = sorted(folder.glob("*.npz"))
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
        """Store the entries of ``memo`` made by :func:`lab.probes.memo.pure` that were not loaded (``known``)
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
    how a Gram is accumulated) and the versions of the packages that compute."""
    from importlib import metadata

    parts = [f"stream_bytes={stream_bytes}"]
    for name in ("lab", "numpy", "scipy", "torch"):
        try:
            parts.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name}=none")
    return ";".join(parts)


def cache_for(out: Path, base_files: list[dict[str, Any]], stream_bytes: int | None) -> BaseCache:
    """The cache of runs written under ``out``, for base files described as the manifest does
    (``{"path", "size", "sha256"}``)."""
    digests = {str(Path(f["path"]).resolve()): f["sha256"] for f in base_files if f.get("sha256")}
    return BaseCache(str((Path(out) / CACHE_DIR).resolve()), digests, fingerprint(stream_bytes))


# ---- one entry ------------------------------------------------------------------------------------

def _storable(a: Any) -> bool:
    # C or Fortran order only: .npy keeps either, so the array read back has the memory layout of the one
    # computed, and BLAS sees the same operands (an eigensolver's vectors are Fortran-ordered; a product
    # with them in C order can differ in the last bit)
    return isinstance(a, np.ndarray) and a.dtype.kind in "fiub" and (a.flags.c_contiguous or a.flags.f_contiguous)


def _arrays(value: Any) -> tuple[list[np.ndarray], bool] | None:
    """(arrays, whether the value is a tuple) for what can be stored, else None."""
    if _storable(value):
        return [value], False
    if isinstance(value, tuple) and value and all(_storable(v) for v in value):
        return list(value), True
    return None


def _digest(arrays: list[np.ndarray]) -> str:
    """CRC-32 of the arrays' dtypes, shapes and bytes: a check against damage (a torn or altered file),
    at a few GB/s where sha256 would cost a reused entry a noticeable part of its unit."""
    crc = 0
    for a in arrays:
        a = np.ascontiguousarray(a)
        crc = zlib.crc32(json.dumps([a.dtype.str, list(a.shape)]).encode(), crc)
        crc = zlib.crc32(memoryview(a.reshape(-1)).cast("B"), crc)
    return f"crc32:{crc:08x}"


def write_entry(path: Path, address: str, key: str, value: Any) -> None:
    """Write one entry atomically: a temporary file in the same folder, renamed into place."""
    arrays, is_tuple = _arrays(value)
    header = {"format": _FORMAT, "address": address, "key": key, "tuple": is_tuple, "count": len(arrays),
              "digest": _digest(arrays)}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                     **{f"a{i}": a for i, a in enumerate(arrays)})
        os.replace(tmp, path)
    except BaseException:
        with _quiet():
            os.unlink(tmp)
        raise


def read_entry(path: Path, address: str) -> tuple[str, Any] | None:
    """(memo key, value) of a valid entry file of ``address``, or None for anything else: a file that
    does not load (truncated, not a zip, a bad CRC), a header for another address or format, or
    arrays whose digest differs from the header's."""
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode())
            arrays = [z[f"a{i}"] for i in range(int(header["count"]))]
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or header.get("format") != _FORMAT or header.get("address") != address:
        return None
    if header.get("digest") != _digest(arrays) or not isinstance(header.get("key"), str):
        return None
    return header["key"], (tuple(arrays) if header.get("tuple") else arrays[0])


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, kind, *rest) -> bool:
        return kind is not None and issubclass(kind, OSError)
