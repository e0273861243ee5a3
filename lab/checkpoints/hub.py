"""Models by their hub names (``org/name``, ``org/name@revision``), found in the local Hugging Face cache.

A user who ran ``hf download`` (``huggingface-cli download``) or loaded a model with transformers has
it in the cache, laid out by huggingface_hub as ``<cache>/models--org--name/refs/<branch>`` (a file
holding the commit hash) and ``<cache>/models--org--name/snapshots/<commit>/`` (the files). lab
resolves a name through huggingface_hub's own ``snapshot_download(..., local_files_only=True)``, which
reads that layout and never downloads. The cache is the one huggingface_hub uses: ``HF_HUB_CACHE``,
else ``HF_HOME``/hub, else ``~/.cache/huggingface/hub``, read from the environment when a name is
resolved (so a changed environment is honoured). A path that exists locally always wins over a hub
name; a name not in the cache is one line naming the cache folder searched and the command that
fetches it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from lab.errors import InputError

# org/name with an optional @revision (a branch, tag or commit hash); Hub ids are letters, digits, - _ .
_NAME = re.compile(r"(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*)(?:@(?P<revision>[A-Za-z0-9._/-]+))?")


@dataclass(frozen=True)
class HubSnapshot:
    """Where a hub name was found: the repo id, the revision asked for, the snapshot's commit and folder."""

    repo_id: str
    revision: str
    commit: str
    path: Path

    def describe(self) -> dict[str, str]:
        """What the manifest records beside the files' sha256."""
        return {"repo_id": self.repo_id, "revision": self.revision, "commit": self.commit, "snapshot": str(self.path)}


def hub_cache() -> Path:
    """The cache folder huggingface_hub would use now (HF_HUB_CACHE, HF_HOME/hub, or the default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "huggingface" / "hub"


def hub_name(text: str | Path) -> tuple[str, str] | None:
    """(repo id, revision) when ``text`` is written as a hub name (revision ``main`` by default), else None."""
    match = _NAME.fullmatch(str(text))
    if match is None:
        return None
    return match["repo"], match["revision"] or "main"


def resolve(text: str | Path) -> tuple[Path, HubSnapshot | None]:
    """The local path for ``text``: itself when it exists (or is not a hub name), else the cached snapshot of the
    hub name; InputError naming the cache folder and the fetch command when the name is not cached."""
    path = Path(text).expanduser()
    if path.exists():
        return path, None
    name = hub_name(text)
    if name is None:
        return path, None
    snap = snapshot(*name)
    return snap.path, snap


def snapshot(repo_id: str, revision: str = "main") -> HubSnapshot:
    """The cached snapshot of ``repo_id`` at ``revision`` (never a download); InputError when absent."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hub_cache()
    try:
        folder = snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):  # ValueError: huggingface_hub's invalid repo id
        at = f"@{revision}" if revision != "main" else ""
        fetch = f"hf download {repo_id}" + (f" --revision {revision}" if at else "")
        raise InputError(f"{repo_id}{at}: not a local path, and not in the Hugging Face cache {cache} "
                         f"(looked for {cache / ('models--' + repo_id.replace('/', '--'))}); fetch it with `{fetch}`") from None
    folder = Path(folder)
    return HubSnapshot(repo_id, revision, folder.name, folder)
