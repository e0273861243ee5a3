"""What a cache entry's address says about the code that computed it: a hash of some of lab's source folders
and the versions of the packages that compute. The engine's base cache and the report's cache both use it, so
an entry never outlives the code that made it."""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path
from typing import Sequence

LAB = Path(__file__).resolve().parent


def source_digest(folders: Sequence[str]) -> str:
    """16 hex digits of sha256 over every ``*.py`` file under ``lab/<folder>`` for each of ``folders`` (path
    relative to lab and bytes, in sorted order), read as files: importing them could register plugins or probes."""
    source = hashlib.sha256()
    for folder in folders:
        for file in sorted((LAB / folder).rglob("*.py")):
            source.update(file.relative_to(LAB).as_posix().encode() + b"\0" + file.read_bytes())
    return source.hexdigest()[:16]


def versions(packages: Sequence[str]) -> list[str]:
    """``name=version`` of each installed package (``name=none`` when absent)."""
    parts = []
    for name in packages:
        try:
            parts.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name}=none")
    return parts
