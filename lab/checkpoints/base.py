"""Opening the base model a fine-tune is compared with (a :class:`~lab.checkpoints.records.Base`: its tensor
index, key lookup and model type)."""

from __future__ import annotations

from pathlib import Path

from lab.checkpoints.discover import checked_layout
from lab.checkpoints.pairing import BaseKeys
from lab.checkpoints.records import Base
from lab.errors import InputError


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
