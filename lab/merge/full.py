"""Full fine-tunes merged as task vectors: τ_j = W_j − W_0 per tensor, into a safetensors model folder.

Every floating tensor of the base W_0 that every fine-tune holds with the same shape is merged
with a task-vector method (:mod:`lab.kernels.task_vectors`: task_arithmetic, ties, dare_linear,
dare_ties, magnitude_prune, PEFT's definitions, each tensor trimmed on its own as mergekit and
PEFT trim) and written as W_0 + M in the base's dtype; every other tensor is the base's. The
base's other files (config.json, tokenizer, generation config) are copied, so
``AutoModel*.from_pretrained(out)`` loads the merged model. DARE's masks are drawn tensor by
tensor in the base's key order, fine-tune after fine-tune, from one generator seeded with --seed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lab.checkpoints import TensorLoader, discover
from lab.checkpoints.naming import module_name, natural_key, strip_weight
from lab.errors import InputError, LabError
from lab.kernels import task_vectors
from lab.kernels.merging import MergeError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")


def is_full_model(path: str | Path) -> bool:
    """Whether ``path`` holds one full model checkpoint (not an adapter)."""
    try:
        found = discover(path)
    except LabError:  # not a model at all: read_adapter says why in one line
        return False
    return len(found) == 1 and found[0].format == "full"


@dataclass
class TensorMerge:
    """One merged tensor: its key, shape, and the errors against the exact weighted sum T."""

    key: str
    shape: tuple[int, ...]
    target_fro: float
    rel_fro: float
    stored_rel_fro: float


def merge_full(models: list[Path], base: Path, out: Path, method: str, weights: list[float], density: float | None,
               seed: int, overwrite: bool = False) -> tuple[list[TensorMerge], str | None]:
    """Merge the full fine-tunes ``models`` of ``base`` into a model folder ``out``; the merged tensors and model_type."""
    import torch
    from safetensors.torch import save_file

    from lab.checkpoints.base import open_base
    from lab.merge.adapters import _TORCH_DTYPES, check_density, check_members, written_folder

    if method not in task_vectors.METHODS:
        raise MergeError(f"--method {method!r}: full fine-tunes merge as task vectors; choose from {', '.join(task_vectors.METHODS)}")
    check_density(method, density)
    check_members(len(models), weights, "models")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out}: exists and is not empty; pass --overwrite or another --out")
    b = open_base(base)
    ckpts = []
    for p in models:
        found = discover(p)
        if len(found) != 1 or found[0].format != "full":
            raise MergeError(f"{p}: is not a full model; merge full fine-tunes with full fine-tunes, adapters with adapters")
        ckpts.append(found[0])
    keys = sorted(b.index.tensors, key=natural_key)
    pairs = {}
    for key in keys:
        info = b.index[key]
        mine = []
        for c in ckpts:
            k = next((k for k in c.index.tensors if b.keys.find(k, c.index[k].file) == key), None) if key not in c.index else key
            if k is None or not info.floating or not c.index[k].floating or c.index[k].shape != info.shape:
                mine = None
                break
            mine.append(c.index[k])
        if mine:
            pairs[key] = mine
    if not pairs:
        raise MergeError(f"the models share no floating tensor of the base {base}'s shapes; pass the model they were fine-tuned from")
    generator = torch.Generator().manual_seed(int(seed)) if method.startswith("dare") else None
    tensors, merged = {}, []
    with TensorLoader() as loader:
        for key in keys:
            info = b.index[key]
            dtype = getattr(torch, _TORCH_DTYPES.get(info.dtype, "float32"))
            W0 = loader.get(info, allow_nonfinite=True)
            if key not in pairs:
                tensors[key] = torch.from_numpy(np.ascontiguousarray(W0)).to(dtype)
                continue
            shape2 = (1, W0.size) if W0.ndim < 2 else (W0.shape[0], int(np.prod(W0.shape[1:])))
            taus = [task_vectors.TaskVector((loader.get(t) - W0).reshape(shape2)) for t in pairs[key]]
            res = task_vectors.merge(taus, weights, method, density, generator=generator)
            W = torch.from_numpy((W0.reshape(shape2) + res.M).reshape(W0.shape)).to(dtype)
            tensors[key] = W.contiguous()
            if res.target_fro == 0 and res.diff_fro == 0:
                continue  # unchanged by every fine-tune: no row
            T = sum(w * t.L for w, t in zip(weights, taus))
            stored = float(np.linalg.norm(W.double().numpy().reshape(shape2) - W0.reshape(shape2) - T))
            rel = (lambda x: x / res.target_fro if res.target_fro > 0 else (0.0 if x == 0 else float("inf")))
            merged.append(TensorMerge(key, tuple(W0.shape), res.target_fro, rel(res.diff_fro), rel(stored)))
    with written_folder(out) as tmp:
        for f in b.path.iterdir() if b.path.is_dir() else []:
            if f.is_file() and not f.name.endswith(WEIGHT_SUFFIXES) and not f.name.endswith(".index.json"):
                shutil.copy2(f, tmp / f.name)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt", "lab_merge_method": method})
    return merged, b.model_type


def full_rows(merged_name: str, run: str, method: str, merges: list[TensorMerge], model_type: str | None,
              members: list[str], weights: list[float], density: float | None, seed: int | None) -> list[dict]:
    """The ``merge`` table's rows of a full fine-tunes' merge: one per 2-D tensor the fine-tunes changed."""
    rows = []
    for t in merges:
        if len(t.shape) != 2:
            continue
        name = module_name(strip_weight(t.key), model_type)
        rows.append({
            "run": run, "checkpoint": merged_name, "step": None, "module": name.module, "layer": name.layer,
            "role": name.role, "method": method, "k": None, "pooled_units": None, "members": ",".join(members),
            "weights": ",".join(f"{w:.6g}" for w in weights), "target_fro_norm": t.target_fro, "rel_fro_error": t.rel_fro,
            "optimal_rel_fro_error": None, "rel_spectral_error": None, "optimal_rel_spectral_error": None,
            "stored_rel_fro_error": t.stored_rel_fro, "hidden_rel_error": None, "method_rel_fro_error": t.rel_fro,
            "truncation_rel_fro_error": None, "density": density, "seed": seed,
        })
    return rows
