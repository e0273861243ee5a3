"""The base model a fine-tune is compared with: its tensor index, key lookup and model type."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.checkpoints.discover import checked_layout
from lab.checkpoints.index import TensorIndex
from lab.checkpoints.pairing import BaseKeys
from lab.errors import InputError


@dataclass
class Base:
    """A full base model, indexed (no tensor read yet); opened once per run."""

    path: Path
    index: TensorIndex
    model_type: str | None  # from its config.json: decides whether GPT-2 names are Conv1D
    keys: BaseKeys
    config: Path | None = None  # config.json, when present (for the manifest)
    hub: dict[str, str] | None = None  # given by hub name: repo_id, revision, commit, snapshot (lab/checkpoints/hub.py)

    @property
    def files(self) -> list[Path]:
        """Every file lab reads from the base: config.json, then the weights and index."""
        return ([self.config] if self.config else []) + list(self.index.files)


def open_base(path: str | Path) -> Base:
    """The base at ``path`` (a full model folder or weight file, or a diffusers model folder with
    its components in subfolders, or a hub name in the local cache); InputError for anything else."""
    from lab.checkpoints.diffusers_names import is_diffusers_folder, open_diffusers_base
    from lab.checkpoints.discover import find_layout
    from lab.checkpoints.hub import resolve

    folder, hub = resolve(path)  # a hub name (org/name[@revision]) found in the local cache; a local path wins
    if folder.is_dir() and is_diffusers_folder(folder) and find_layout(folder) is None:
        base = open_diffusers_base(folder)
    else:
        folder, layout = checked_layout(folder, what="--base")
        if layout.format != "full":
            raise InputError(f"{folder}: --base must be a full model, not an adapter; pass the model the adapter was trained on")
        index = layout.index()
        base = Base(folder, index, layout.model_type(), BaseKeys(index.keys(), str(folder)), layout.config)
    base.hub = hub.describe() if hub is not None else None
    return base
