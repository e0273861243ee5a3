"""The order in which a model visits its modules (``named_modules``), for DARE's masks.

PEFT's ``add_weighted_adapter`` draws DARE's Bernoulli masks module after module in the model's
``named_modules`` order; drawing them in the same order from the same seed gives the same masks.
The order comes from the base's config.json alone: the model class is built on PyTorch's meta
device (no weights read or allocated). Without a base (neither --base nor an adapter config's
``base_model_name_or_path`` found locally) there is no order and the modules go in natural order.
"""

from __future__ import annotations

import json
from pathlib import Path


def _base_folder(base, config: dict) -> Path | None:
    from lab.checkpoints.hub import resolve
    from lab.errors import LabError

    for where in (base, config.get("base_model_name_or_path")):
        if not where:
            continue
        try:
            folder = resolve(where)[0]
        except LabError:
            continue
        if (Path(folder) / "config.json").is_file():
            return Path(folder)
    return None


def model_order(base, config: dict) -> list[str] | None:
    """The model's module names in ``named_modules`` order (with and without their leading parts), or None."""
    folder = _base_folder(base, config)
    if folder is None:
        return None
    import torch
    import transformers

    try:
        raw = json.loads((folder / "config.json").read_text())
        cfg = transformers.AutoConfig.from_pretrained(folder)
        arch = (raw.get("architectures") or [None])[0]
        cls = getattr(transformers, arch, None) if arch else None
        with torch.device("meta"):
            model = cls(cfg) if cls is not None else transformers.AutoModel.from_config(cfg)
    except (ValueError, OSError, KeyError, TypeError, AttributeError):  # a config transformers cannot build: no order
        return None
    names = [n for n, _ in model.named_modules() if n]
    order = []
    for n in names:  # a PEFT module path may lack the outer wrapper's prefix, or carry it: every suffix of n
        parts = n.split(".")
        order.extend(".".join(parts[i:]) for i in range(len(parts)))
    return list(dict.fromkeys(order))
