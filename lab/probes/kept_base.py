"""A model-scope probe's base part kept on disk and reused: one folder per content address.

A probe that runs the model on text computes its base's part once per run (its ``prepare`` step);
runs on the same base with the same texts and options compute the same thing again. A probe that
offers it (attention's ``reuse_base``) keeps that part under ``cache_dir/<probe>-base-<address>/``,
where the address is a sha256 of everything that decides its bits: the base folder's files (their
contents), the texts, the probe's options, the source of the probe's module (and of what loads the
model) with the lab modules they import, the versions of the packages that compute and torch's
thread count. A changed input, option or line of that source is a new address, so an entry never
outlives what made it.

An entry is written into a temporary folder and renamed into place when complete; concurrent runs
(the demo's worker processes) take a lock on the address, so one computes and the others read.

    >>> address = address_of(base_dir, texts, options, ("lab.probes.attention",))   # doctest: +SKIP
    >>> with kept("/tmp/cache", "attention", address) as entry:                       # doctest: +SKIP
    ...     if entry.found: prepared = read(entry.folder)
    ...     else: write(entry.folder)                          # published when the block ends
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

_FORMAT = 1


def address_of(base: Path, texts: list[str], options: Any, modules: tuple[str, ...],
               leave_out: tuple[str, ...] = ()) -> str:
    """The content address of a base's part: sha256 over the base folder's files, the texts, the
    options (a dataclass; ``leave_out`` names fields that change nothing, such as where it is kept),
    the source of ``modules`` (the probe's, and what loads the model) and of the lab modules they
    import, package versions and torch's thread count."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": _FORMAT, "fingerprint": fingerprint(modules), "options": _options(options, leave_out)},
                        sort_keys=True, default=str).encode())
    root = Path(base)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(b"\0file\0" + str(file.relative_to(root)).encode() + b"\0")
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    for text in texts:
        h.update(b"\0text\0" + text.encode())
    return h.hexdigest()[:40]


def fingerprint(modules: tuple[str, ...]) -> str:
    """What besides the inputs can change a result's last bits: the source of ``modules`` and of every
    lab module they import (read as files, :func:`source_files`), the versions of the packages that
    compute, and torch's threads in this process."""
    import torch

    from lab.fingerprint import versions

    parts = [f"source={imported_source_digest(tuple(modules))}", f"torch_threads={torch.get_num_threads()}"]
    return ";".join(parts + versions(("lab", "numpy", "torch", "transformers", "peft", "tokenizers")))


@functools.lru_cache(maxsize=None)
def imported_source_digest(modules: tuple[str, ...]) -> str:
    """sha256 of the files of ``modules`` and the lab modules they import, read once per process: the
    code a process runs is what it imported, whatever is saved over the files later (in a working tree
    being edited, re-reading them at every run would give each run a new address)."""
    lab_folder = Path(__file__).resolve().parents[1]
    source = hashlib.sha256()
    for file in sorted({f for m in modules for f in source_files(m)}):
        source.update(str(file.relative_to(lab_folder)).encode() + b"\0" + file.read_bytes())
    return source.hexdigest()[:16]


def source_files(module: str) -> list[Path]:
    """The files of ``module`` (``lab.probes.attention``) and of the lab modules it imports, transitively
    (read with ``ast``: imports inside functions too). Packages' ``__init__`` files are not followed: they
    only gather modules (``lab.probes``' would bring in every probe, and an edit to an unrelated probe
    would make every entry new)."""
    lab_folder = Path(__file__).resolve().parents[1]
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        if parts[0] != "lab" or len(parts) < 2:
            continue
        file = lab_folder.joinpath(*parts[1:]).with_suffix(".py")
        if not file.is_file() or file in seen:
            continue
        seen.add(file)
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                todo += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return sorted(seen)


def _options(options: Any, leave_out: tuple[str, ...]) -> dict[str, Any]:
    values = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if k not in leave_out}


@dataclass
class Entry:
    """One address's folder: ``found`` when it was complete already (read it), else a fresh folder to
    write, published under the address when the ``kept`` block ends without an error."""

    folder: Path
    found: bool
    home: Path  # where the entry is once published (``folder`` when found)


@contextlib.contextmanager
def kept(root: str | Path, probe: str, address: str) -> Iterator[Entry]:
    """The entry of ``probe`` at ``address`` under ``root``, locked against other processes for the block.

    A found entry is yielded as is; otherwise a temporary folder beside it, renamed into place when the
    block ends (removed on an error, so a half-written entry is never found)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{probe}-base-{address}"
    with _locked(root / f".{probe}-base-{address}.lock"):
        if final.is_dir():
            yield Entry(final, True, final)
            return
        scratch = Path(tempfile.mkdtemp(prefix=f".{probe}-base-", dir=root))
        try:
            yield Entry(scratch, False, final)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        os.replace(scratch, final)


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` for the block (where fcntl exists; elsewhere no lock: concurrent
    runs then compute the same entry, and the last rename wins, with the same contents)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
