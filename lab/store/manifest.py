"""The run manifest: what went in (files with sizes and sha256), with which options and
package versions, when, and whether the run completed."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

from lab.cores import usable_cores

MANIFEST = "manifest.json"
KEY_PACKAGES = ("lab", "numpy", "scipy", "quimb", "torch", "safetensors", "transformers", "peft", "pyarrow", "pandas")


def now() -> str:
    """The current UTC time, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def sha256(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB chunks into one buffer."""
    h = hashlib.sha256()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            h.update(view[:n])
    return h.hexdigest()


def describe_file(path: Path) -> dict[str, Any]:
    """A file's absolute path, size in bytes and sha256."""
    path = Path(path)
    return {"path": str(path.resolve()), "size": path.stat().st_size, "sha256": sha256(path)}


def describe_files(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """:func:`describe_file` of each path, in order, hashed side by side on the cores this process may use.

    hashlib and file reads release the GIL, so threads hash in parallel: the inputs of a run (a base and a
    fine-tune, or every shard of both) are hashed in about 1/cores of the time one after the other takes.
    """
    paths = [Path(p) for p in paths]
    lanes = min(len(paths), usable_cores())
    if lanes < 2:
        return [describe_file(p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor

    # the largest files first, so that one big shard does not start last
    order = sorted(range(len(paths)), key=lambda i: -paths[i].stat().st_size)
    with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="lab-sha256") as pool:
        described = dict(zip(order, pool.map(describe_file, [paths[i] for i in order])))
    return [described[i] for i in range(len(paths))]


def versions() -> dict[str, str]:
    """Versions of Python, lab and the packages whose behaviour the numbers depend on."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in KEY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json atomically (a reader never sees half a file)."""
    target = Path(folder) / MANIFEST
    tmp = target.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    os.replace(tmp, target)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a run folder."""
    return json.loads((Path(folder) / MANIFEST).read_text())


def as_stored(value: Any) -> Any:
    """``value`` as the manifest stores it (JSON, with paths and other objects as strings)."""
    return json.loads(json.dumps(value, default=str))


def changed_options(stored: dict[str, Any], wanted: dict[str, Any], *, only_wanted: bool = False) -> list[str]:
    """The option names whose value in a run's manifest (``stored``: its ``options``) differs from ``wanted``.

    Every name either holds, unless ``only_wanted`` (then only the names ``wanted`` gives: a run made
    with more options than asked for still answers the question). This is the one comparison that
    decides whether a run folder can be resumed (``lab analyze --resume``) or reused (``lab demo``).
    """
    wanted = as_stored(wanted)
    names = set(wanted) if only_wanted else set(wanted) | set(stored)
    return sorted(k for k in names if stored.get(k) != wanted.get(k))
