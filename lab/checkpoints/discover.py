"""What a path holds: one checkpoint (adapter or full model), or a training time series
(:class:`~lab.checkpoints.records.Checkpoint` records, each with its :class:`~lab.checkpoints.records.Layout`).

A folder's format is decided by file names alone (the layouts ``transformers`` and PEFT
write); the weights are then validated cheaply (safetensors headers, index json, adapter
config and factor shapes) so that bad input fails before any work is done.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lab.checkpoints.adapter_config import CONFIG_NAME, AdapterConfig, peft_type
from lab.checkpoints.adapter_weights import WEIGHT_NAMES, adapter_modules, check_modules
from lab.checkpoints.mps import MPS_CONFIG, MPS_WEIGHTS, MPSConfig, mps_modules
from lab.checkpoints.naming import natural_key
from lab.checkpoints.peft_general import check_peft_adapter
from lab.checkpoints.records import Checkpoint, Layout
from lab.errors import FormatError, InputError

# Full-model weight files, in the order transformers looks for them.
FULL_NAMES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json", "pytorch_model.bin")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
_STEP_DIR = re.compile(r"checkpoint-(\d+)")


def find_layout(path: Path) -> Layout | None:
    """The layout of a folder or file; None for a folder without weights."""
    path = Path(path)
    if path.is_file():
        return _file_layout(path)
    if (path / MPS_CONFIG).is_file():
        if not (path / MPS_WEIGHTS).is_file():
            raise InputError(f"{path}: {MPS_CONFIG} but no {MPS_WEIGHTS}; copy the MPS adapter's weights too")
        return Layout("mps", (path / MPS_WEIGHTS,), path / MPS_CONFIG)
    adapter = next((path / n for n in WEIGHT_NAMES if (path / n).is_file()), None)
    full = next((path / n for n in FULL_NAMES if (path / n).is_file()), None)
    if full is None and adapter is None:  # a lone weight file under another name
        loose = sorted(p for p in path.glob("*.safetensors") if p.is_file())  # a folder named x.safetensors is not one
        if len(loose) > 1:
            raise InputError(f"{path}: several .safetensors files and no index json; pass the one file to analyse")
        full = loose[0] if loose else None
    if adapter is not None and full is not None:
        raise InputError(f"{path}: holds both adapter weights ({adapter.name}) and a full model ({full.name}); pass one file")
    if adapter is not None:
        config = path / CONFIG_NAME
        if not config.is_file():
            raise InputError(f"{path}: {adapter.name} without {CONFIG_NAME}; copy the adapter's config next to its weights")
        return Layout("adapter", (adapter,), config)
    if full is not None:
        if (image := _image_layout(full)) is not None:
            return image
        config = path / "config.json"
        return Layout("full", (full,), config if config.is_file() else None)
    if (path / CONFIG_NAME).is_file():
        raise InputError(f"{path}: {CONFIG_NAME} but no {' or '.join(WEIGHT_NAMES)}; copy the adapter weights too")
    return None


def _file_layout(path: Path) -> Layout:
    if path.name in WEIGHT_NAMES + (MPS_WEIGHTS,):  # an adapter's weight file stands for its folder
        return find_layout(path.parent)
    if (image := _image_layout(path)) is not None:
        return image
    config = path.parent / "config.json"
    config = config if config.is_file() else None
    if path.suffix == ".safetensors" or path.suffix in PICKLE_SUFFIXES or path.name.endswith(".index.json"):
        return Layout("full", (path,), config)
    raise InputError(f"{path}: not a weight file lab reads (.safetensors, .bin, .pt, .pth, *.index.json, or a folder)")


def _image_layout(path: Path) -> Layout | None:
    """A kohya / LyCORIS or diffusers LoRA file (told by its tensor names), else None."""
    from lab.checkpoints.kohya import image_format
    from lab.checkpoints.safetensors_header import read_header

    if path.suffix != ".safetensors" or not path.is_file():
        return None
    fmt = image_format(read_header(path))
    return Layout(fmt, (path,), None) if fmt is not None else None


def checked_layout(path: str | Path, what: str = "checkpoint") -> tuple[Path, Layout]:
    """The layout of an existing, non-empty path with weights; InputError otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder ({what})")
    if path.is_dir() and not any(path.iterdir()):
        raise InputError(f"{path}: the folder is empty ({what})")
    layout = find_layout(path)
    if layout is None:
        raise InputError(
            f"{path}: no weights found ({what}); expected {', '.join(WEIGHT_NAMES + FULL_NAMES)}, "
            "checkpoint-N/ folders, or subfolders that hold checkpoints"
        )
    return path, layout


def discover(path: str | Path) -> list[Checkpoint]:
    """The checkpoints at ``path``: one, a training output's ``checkpoint-N/`` series by step, or a
    folder of checkpoints (say, adapters of one base to compare or merge).

    A training output's top-level weights (the final model) come last, with the step from
    ``trainer_state.json`` when present. A folder with neither weights nor ``checkpoint-N/``
    folders is a collection: each subfolder that holds a checkpoint, in natural name order
    (``lora-r4`` before ``lora-r16``), named by its folder, without a step. Every checkpoint is validated before this returns:
    InputError for missing/empty/weightless paths, FormatError for damaged files or
    configs, ShapeError for adapter factors that disagree with r.

    ``path`` may be a hub name, ``org/name`` or ``org/name@revision``, found in the local Hugging Face
    cache when no such local path exists (:mod:`lab.checkpoints.hub`); a lone checkpoint is then named
    as given, and every checkpoint records the repo id, revision and commit.
    """
    from lab.checkpoints.hub import resolve

    found, hub = resolve(path)
    checkpoints = _discover(found)
    if hub is not None:
        for c in checkpoints:
            c.hub = hub.describe()
        if len(checkpoints) == 1 and checkpoints[0].path == found:
            checkpoints[0].name = str(path)
    return checkpoints


def _discover(path: Path) -> list[Checkpoint]:
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        steps = sorted(
            (int(m.group(1)), d) for d in path.iterdir() if d.is_dir() and (m := _STEP_DIR.fullmatch(d.name))
        )
        if steps:
            series = [_checkpoint(d, d.name, n) for n, d in steps]
            if find_layout(path) is not None:
                final_step, state = _trainer_step(path)
                final = _checkpoint(path, path.name, final_step)
                final.files += [state] if state else []
                series.append(final)
            return series
        if find_layout(path) is None:
            members = [d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".") and find_layout(d) is not None]
            if members:
                return [_checkpoint(d, d.name, None) for d in sorted(members, key=lambda d: natural_key(d.name))]
    match = _STEP_DIR.fullmatch(path.name)
    return [_checkpoint(path, path.name, int(match.group(1)) if match else None)]


def _checkpoint(path: Path, name: str, step: int | None) -> Checkpoint:
    """One validated checkpoint."""
    path, layout = checked_layout(path)
    index = layout.index()
    files = list(index.files)
    if layout.format == "adapter" and (kind := peft_type(layout.config)) != "LORA":
        check_peft_adapter(layout.config, kind)  # other PEFT types: the rest needs the base (plan_reads)
    elif layout.format == "adapter":
        config = AdapterConfig.read(layout.config)
        check_modules(adapter_modules(index), config, layout.weights[0])
    if layout.format == "mps":
        mps_modules(index, MPSConfig.read(layout.config), layout.weights[0])
    metadata = {}
    if layout.format in ("kohya", "diffusers"):
        from lab.checkpoints.kohya import image_modules, recorded_metadata

        image_modules(index, layout.format, layout.weights[0])  # shapes, ranks and alphas checked now
        metadata = recorded_metadata(layout.weights[0])
    model_type = None
    if layout.config is not None:
        model_type = layout.model_type()  # a broken config.json fails now, not mid-run
        files.insert(0, layout.config)
    return Checkpoint(name=name, step=step, path=path, format=layout.format, files=files, layout=layout,
                      index=index, model_type=model_type, metadata=metadata)


def _trainer_step(folder: Path) -> tuple[int | None, Path | None]:
    """``global_step`` from a training output's trainer_state.json, and the file; (None, None) without one."""
    state = folder / "trainer_state.json"
    if not state.is_file():
        return None, None
    try:
        step = json.loads(state.read_bytes()).get("global_step")
    except (ValueError, RecursionError, AttributeError):  # ValueError: bad JSON, text or a 4300+ digit int
        raise FormatError(f"{state}: invalid JSON; fix or remove it") from None
    return (step if isinstance(step, int) and not isinstance(step, bool) else None), state
