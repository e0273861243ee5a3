"""Reading the adapters to merge, merging every module, and writing a PEFT adapter folder.

The factors are merged in PEFT's stored layout (lora_B (out, r), lora_A (r, in); embeddings'
lora_embedding_B (dim, r), lora_embedding_A (r, num_embeddings)), so a merged module is written
back under the same keys whatever its kind: PEFT's update s·B·A (transposed for embeddings, or for
GPT-2's Conv1D by ``fan_in_fan_out``) is a linear function of the stored product, and every
merge of stored products is the same merge of the updates.

Scales: each input's s_j is PEFT's (lora_alpha/r or lora_alpha/√r with rsLoRA, rank_pattern and
alpha_pattern per module, read by :mod:`lab.checkpoints`). The merged factors carry every scale
and weight inside A and are written with scale 1: ``r`` = ``lora_alpha`` = the largest merged
rank, and ``rank_pattern`` = ``alpha_pattern`` = {module: its rank} for every other module,
``use_rslora`` false. PEFT's update is then exactly the merged factors' product.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lab.checkpoints import TensorLoader, discover, module_name, plan_reads
from lab.checkpoints.diffusers_names import KOHYA_PREFIXES, image_name
from lab.deltas import Factors
from lab.kernels.factored import core_singular_values
from lab.errors import InputError
from lab.kernels import merging, task_vectors
from lab.kernels.merging import MergeError

PREFIX = "base_model.model."


@dataclass
class Adapter:
    """One input adapter: its name, raw config and stored factors per PEFT module path."""

    path: Path
    name: str
    config: dict
    factors: dict[str, Factors]
    embedding: dict[str, bool]
    dtype: str
    use_dora: bool


def read_adapter(path: str | Path) -> Adapter:
    """The adapter at ``path`` with its stored factors in float64 and PEFT's scale per module."""
    path = Path(path)
    found = discover(path)
    if len(found) == 1 and found[0].format == "kohya":
        return _read_kohya(path, found[0])
    if len(found) != 1 or found[0].format != "adapter":
        what = "a full model" if found and found[0].format == "full" else f"{len(found)} checkpoints"
        raise InputError(f"{path}: holds {what}; lab merge takes PEFT adapter folders (pick one checkpoint-N/)")
    ckpt = found[0]
    config = json.loads(Path(ckpt.layout.config).read_text())
    factors, embedding, dtypes = {}, {}, set()
    with TensorLoader() as loader:
        for spec in plan_reads(ckpt, None):
            A, B = loader.get(spec.A), loader.get(spec.B)
            factors[spec.module] = Factors(B, A, spec.scale)
            embedding[spec.module] = spec.embedding
            dtypes.add(spec.A.dtype)
    return Adapter(path, ckpt.name, config, factors, embedding, sorted(dtypes)[0] if dtypes else "F32",
                   bool(config.get("use_dora")))


def _read_kohya(path: Path, ckpt) -> Adapter:
    """A kohya LoRA/LoCon file as an Adapter: factors B = up (out × r), A = down (r × in·kh·kw), s = alpha/r;
    its config remembers each module's stored shapes so the merge is written back in kohya's layout."""
    factors, shapes, dtypes = {}, {}, set()
    with TensorLoader() as loader:
        for spec in plan_reads(ckpt, None):
            m = spec.kohya
            if m.algo != "lora" or m.dora is not None or "lora_mid.weight" in m.by_name:
                what = "a DoRA" if m.dora is not None else ("a Tucker LoCon" if m.algo == "lora" else f"a {m.algo}")
                raise MergeError(f"{path}: module '{m.name}' is {what} module; lab merge of kohya files takes plain "
                                 "LoRA/LoCon modules (lora_down/lora_up), whose updates are sums of rank-one units")
            down, up = loader.get(spec.A), loader.get(spec.B)
            factors[spec.module] = Factors(up.reshape(up.shape[0], -1), down.reshape(down.shape[0], -1), spec.scale)
            shapes[spec.module] = {"down": list(down.shape[1:]), "up_ndim": up.ndim}
            dtypes.add(spec.A.dtype)
    config = {"format": "kohya", "shapes": shapes}
    return Adapter(path, ckpt.name, config, factors, dict.fromkeys(factors, False), sorted(dtypes)[0] if dtypes else "F32", False)


def write_kohya(out: Path, merges: list[ModuleMerge], template: dict, dtype: str, method: str, overwrite: bool = False) -> Path:
    """A kohya LoRA file ``out/<out.name>.safetensors`` (a folder holding one file is an input lab reads):
    per module ``lora_down.weight`` (k × in [× kh × kw]), ``lora_up.weight`` (out × k [× 1 × 1]) and
    ``alpha`` = k, so sd-scripts' scale alpha/r is 1 and the update is the merged factors' product."""
    import torch
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out}: exists and is not empty; pass --overwrite or another --out")
    t = getattr(torch, _TORCH_DTYPES.get(dtype, "float32"))
    tensors, ranks = {}, {}
    for mm in merges:
        f, shape = mm.merged, template["shapes"][mm.module]
        assert f.scale == 1.0  # every merge folds its scales into A
        k = f.B.shape[1]
        up = f.B.reshape(f.B.shape[0], k, *([1] * (shape["up_ndim"] - 2)))
        tensors[f"{mm.module}.lora_down.weight"] = torch.from_numpy(f.A.reshape(k, *shape["down"])).to(t).contiguous()
        tensors[f"{mm.module}.lora_up.weight"] = torch.from_numpy(np.ascontiguousarray(up)).to(t).contiguous()
        tensors[f"{mm.module}.alpha"] = torch.tensor(float(k), dtype=torch.float32)
        ranks[mm.module] = k
    r = max(ranks.values())
    metadata = {"ss_network_module": "networks.lora", "ss_network_dim": str(r), "ss_network_alpha": str(r),
                "lab_merge_method": method}
    with written_folder(out) as tmp:
        save_file(tensors, str(tmp / f"{out.name}.safetensors"), metadata=metadata)
    return out / f"{out.name}.safetensors"


@dataclass
class ModuleMerge:
    """One merged module: the merged and exact factors, who contributed, and the errors."""

    module: str
    members: list[str]
    weights: list[float]
    pooled: int
    merged: Factors
    target: Factors
    errors: merging.MergeErrors
    embedding: bool
    method_rel_fro: float | None = None  # ‖M − T‖_F / ‖T‖_F of the method's full-rank result (before the rank-k cut)
    truncation_rel_fro: float | None = None  # ‖M − M_k‖_F / ‖T‖_F: what the rank-k cut alone costs


ALL_METHODS = merging.METHODS + task_vectors.METHODS


@contextmanager
def written_folder(out: Path) -> Iterator[Path]:
    """A temporary folder beside ``out`` to write a merged model or adapter into; when the block ends
    without an error it replaces ``out`` (a rename), otherwise it is removed: a failed or interrupted
    merge never leaves a half-written folder under the name asked for."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_members(count: int, weights: list[float], noun: str) -> None:
    """One-line MergeErrors unless there are two or more inputs (``noun``: adapters, models) and one weight each."""
    if count < 2:
        raise MergeError(f"lab merge needs at least two {noun}")
    if len(weights) != count:
        raise MergeError(f"--weights gives {len(weights)} weights for {count} {noun}")


def check_inputs(adapters: list[Adapter], weights: list[float], method: str, rank: int | None,
                 density: float | None = None) -> None:
    """One-line MergeErrors for inputs no method can merge (raised before anything is computed)."""
    if method not in ALL_METHODS:
        raise MergeError(f"--method {method!r}: choose from {', '.join(ALL_METHODS)}")
    check_density(method, density)
    check_members(len(adapters), weights, "adapters")
    if not all(np.isfinite(weights)):
        raise MergeError(f"--weights {weights}: every weight must be a finite number")
    formats = {a.config.get("format", "peft") for a in adapters}
    if len(formats) > 1:
        raise MergeError("the inputs mix kohya files and PEFT adapter folders; merge adapters of one format")
    dora = [a.path for a in adapters if a.use_dora]
    if dora:
        raise MergeError(f"{dora[0]} is a DoRA adapter: its update m·(W + sBA)/‖W + sBA‖ − W is not a sum of "
                         f"low-rank units, so no merge method here can represent it")
    bases = {a.config.get("base_model_name_or_path") for a in adapters} - {None, ""}
    if len(bases) > 1:
        raise MergeError(f"the adapters were trained on different bases ({', '.join(sorted(map(str, bases)))})")
    shared = [m for m in {m for a in adapters for m in a.factors} if sum(m in a.factors for a in adapters) >= 2]
    if not shared:
        raise MergeError("the adapters' target modules do not overlap: no module is adapted by two of them")
    for m in shared:
        shapes = {(a.name, a.factors[m].shape, a.embedding[m]) for a in adapters if m in a.factors}
        if len({s[1:] for s in shapes}) > 1:
            raise MergeError(f"module '{m}' has different shapes or kinds across the adapters "
                             f"({', '.join(f'{n}: {s}' for n, s, _ in sorted(shapes))}): not adapters of one base")
    if method in ("stack", "linear") and rank is not None:
        raise MergeError(f"--rank applies to svd, lego, lego-oracle and the task-vector methods; {method} keeps {'the pooled units' if method == 'stack' else 'the common rank'}")
    if rank is not None and method in task_vectors.METHODS and method != "task_arithmetic":
        largest = max(min(a.factors[m].shape) for a in adapters for m in a.factors)
        if rank < 1 or rank > largest:
            raise MergeError(f"--rank {rank}: must be between 1 and {largest}, the largest module's smaller dimension")
    elif rank is not None:
        largest = max(sum(a.factors[m].rank_bound for a in adapters if m in a.factors) for m in {m for a in adapters for m in a.factors})
        if rank < 1 or rank > largest:
            raise MergeError(f"--rank {rank}: must be between 1 and the {largest} pooled units of the adapters")


def check_density(method: str, density: float | None) -> None:
    """--density is the fraction of entries kept by ties, dare_* and magnitude_prune, 0 < d ≤ 1; no other method takes it."""
    if method in task_vectors.DENSITY_METHODS:
        if density is None:
            raise MergeError(f"--method {method} needs --density d, the fraction of each update's entries kept (0 < d ≤ 1)")
        if not (0 < density <= 1):
            raise MergeError(f"--density {density}: must be in (0, 1], the fraction of each update's entries kept")
    elif density is not None:
        raise MergeError(f"--density applies to {', '.join(task_vectors.DENSITY_METHODS)}, not {method}")


def merge_modules(adapters: list[Adapter], weights: list[float], method: str, rank: int | None = None,
                  seed: int = 0, reweight: bool = True, density: float | None = None,
                  order: list[str] | None = None) -> list[ModuleMerge]:
    """Every module of the union merged: a module an adapter lacks contributes zero (it is left out).

    ``order``: the modules in the model's own order (``named_modules``), in which DARE draws its
    masks, as PEFT's ``add_weighted_adapter`` visits them; modules it does not name follow in natural order.
    """
    check_inputs(adapters, weights, method, rank, density)
    modules = sorted({m for a in adapters for m in a.factors}, key=_natural)
    pos = {m: i for i, m in enumerate(order or ())}
    visit = sorted(modules, key=lambda m: (pos[m], ()) if m in pos else (len(pos), _natural(m)))
    generator = None
    if method.startswith("dare"):
        import torch

        generator = torch.Generator().manual_seed(int(seed))
    transposed = bool(adapters[0].config.get("fan_in_fan_out")) and adapters[0].config.get("format") != "kohya"
    done = {}
    for m in visit:
        present = [(a, w) for a, w in zip(adapters, weights) if m in a.factors]
        fs, ws = [a.factors[m] for a, _ in present], [w for _, w in present]
        pooled = sum(f.rank_bound for f in fs)
        target = merging.stack(fs, ws)
        k = min(rank if rank is not None else max(f.rank_bound for f in fs), pooled)
        embedding = present[0][0].embedding[m]
        extra = {}
        try:
            if method == "stack":
                merged, extra = target, {"method_rel_fro": 0.0, "truncation_rel_fro": 0.0}
            elif method == "linear":
                merged = merging.linear(fs, ws)
            elif method == "svd":
                merged = merging.svd(fs, ws, k)
            elif method == "lego":
                merged = merging.lego(fs, ws, k, seed=seed, reweight=reweight)
            elif method == "lego-oracle":
                merged = merging.lego_oracle(fs, ws, k, seed=seed, reweight=reweight)
            else:
                k = rank if rank is not None else max(f.rank_bound for f in fs)
                merged, extra = task_vector_merge(fs, ws, method, k, density, generator, transposed or embedding, rank is None)
        except MergeError as e:
            raise MergeError(f"module '{m}': {e}") from None
        errs = merging.errors(merged, target)
        if method == "svd":
            extra = {"method_rel_fro": 0.0, "truncation_rel_fro": errs.rel_fro}
        done[m] = ModuleMerge(m, [a.name for a, _ in present], ws, pooled, merged, target, errs, embedding, **extra)
    return [done[m] for m in modules]


def task_vector_merge(fs: list[Factors], ws: list[float], method: str, k: int, density: float | None, generator,
                      transposed: bool, default_rank: bool = False) -> tuple[Factors, dict]:
    """One module's TIES/DARE/magnitude-prune/task-arithmetic merge of the updates s_j·B_j·A_j, cut to rank k.

    The updates are taken in PEFT's ``get_delta_weight`` layout (transposed for embeddings and
    ``fan_in_fan_out``), where DARE's masks are drawn; the merged M is cut to rank k by its exact
    SVD and written back as stored factors. task_arithmetic needs no dense matrix: M = T is cut
    from the stacked factors, at T's numerical rank when ``default_rank`` (no --rank given).
    """
    target = merging.stack(fs, ws)
    t_fro = target.fro_norm()
    rel = (lambda x: x / t_fro if t_fro > 0 else (0.0 if x == 0 else float("inf")))
    if method == "task_arithmetic":
        sigma = core_singular_values(target)
        if default_rank:  # numpy's matrix_rank rule on T's singular values
            tol = sigma[0] * max(target.shape) * np.finfo(float).eps if sigma.size else 0.0
            k = max(1, int((sigma > tol).sum()))
        merged = merging.svd(fs, ws, min(k, target.rank_bound))
        return merged, {"method_rel_fro": 0.0, "truncation_rel_fro": rel(float(np.sqrt((sigma[k:] ** 2).sum())))}
    if transposed:
        tvs = [task_vectors.TaskVector(f.A.T, f.scale * f.B.T) for f in fs]
    else:
        tvs = [task_vectors.TaskVector(f.scale * f.B, f.A) for f in fs]
    dense, cut = task_vectors.merge_truncated(tvs, ws, method, k, density, generator=generator)
    merged = Factors(cut.R.T, cut.L.T, 1.0) if transposed else Factors(cut.L, cut.R, 1.0)
    return merged, {"method_rel_fro": rel(dense.diff_fro), "truncation_rel_fro": rel(cut.residual_fro)}


def _natural(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


_TORCH_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


def stored(f: Factors, dtype: str) -> Factors:
    """The factors as they will be stored (rounded to ``dtype``), for the error of what is written."""
    import torch

    t = getattr(torch, _TORCH_DTYPES.get(dtype, "float32"))
    return Factors(torch.from_numpy(f.B).to(t).double().numpy(), torch.from_numpy(f.A).to(t).double().numpy(), f.scale)


def write_adapter(out: Path, merges: list[ModuleMerge], template: dict, dtype: str, overwrite: bool = False) -> None:
    """A PEFT adapter folder at ``out``: adapter_model.safetensors and adapter_config.json (scale 1).

    Written to a temporary folder beside ``out`` and renamed, so a failure leaves nothing behind.
    """
    import torch
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out}: exists and is not empty; pass --overwrite or another --out")
    t = getattr(torch, _TORCH_DTYPES.get(dtype, "float32"))
    tensors = {}
    ranks = {}
    for mm in merges:
        f = mm.merged
        assert f.scale == 1.0  # every merge folds its scales into A
        if mm.embedding:
            tensors[f"{PREFIX}{mm.module}.lora_embedding_A"] = torch.from_numpy(f.A).to(t).contiguous()
            tensors[f"{PREFIX}{mm.module}.lora_embedding_B"] = torch.from_numpy(f.B).to(t).contiguous()
        else:
            tensors[f"{PREFIX}{mm.module}.lora_A.weight"] = torch.from_numpy(f.A).to(t).contiguous()
            tensors[f"{PREFIX}{mm.module}.lora_B.weight"] = torch.from_numpy(f.B).to(t).contiguous()
        ranks[mm.module] = f.rank_bound
    r = max(ranks.values())
    config = dict(template)
    # scale 1 everywhere: lora_alpha = r for the common rank, alpha_pattern = rank_pattern elsewhere
    pattern = {re.escape(m): k for m, k in ranks.items() if k != r}
    config.update(r=r, lora_alpha=r, use_rslora=False, use_dora=False, rank_pattern=pattern, alpha_pattern=dict(pattern),
                  target_modules=sorted(ranks, key=_natural), layers_to_transform=None, layers_pattern=None,
                  modules_to_save=None, exclude_modules=None, peft_type="LORA")
    for key in ("layer_replication", "trainable_token_indices"):
        config.pop(key, None)  # input-specific structure a merge does not carry over
    with written_folder(out) as tmp:
        save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def merge_rows(merged_name: str, run: str, method: str, merges: list[ModuleMerge], dtype: str,
               density: float | None = None, seed: int | None = None) -> list[dict]:
    """The ``merge`` table's rows: one per merged module (``density`` and ``seed`` as the method used them)."""
    rows = []
    for mm in merges:
        e = mm.errors
        written = merging.errors(stored(mm.merged, dtype), mm.target)
        name = image_name(mm.module) if mm.module.startswith(tuple(KOHYA_PREFIXES)) else module_name(mm.module)
        rows.append({
            "run": run, "checkpoint": merged_name, "step": None, "module": mm.module, "layer": name.layer, "role": name.role,
            "method": method, "k": mm.merged.rank_bound, "pooled_units": mm.pooled, "members": ",".join(mm.members),
            "weights": ",".join(f"{w:.6g}" for w in mm.weights), "target_fro_norm": e.target_fro,
            "rel_fro_error": e.rel_fro, "optimal_rel_fro_error": e.optimal_rel_fro,
            "rel_spectral_error": e.rel_spectral, "optimal_rel_spectral_error": e.optimal_rel_spectral,
            "stored_rel_fro_error": written.rel_fro, "hidden_rel_error": None,
            "method_rel_fro_error": mm.method_rel_fro, "truncation_rel_fro_error": mm.truncation_rel_fro,
            "density": density, "seed": seed,
        })
    return rows


def write_merge_table(results: Path, run: str, rows: list[dict]) -> Path:
    """Add the rows to RESULTS/RUN/merge.parquet (rows of the same merged adapter replaced)."""
    from lab.store.manifest import now, write_manifest
    from lab.store.writer import upsert_table

    path, table = upsert_table(results, run, "merge", rows, "checkpoint")
    folder = path.parent
    write_manifest(folder, {"run": run, "status": "complete", "kind": "merge", "updated": now(),
                            "merged": sorted(set(table.column("checkpoint").to_pylist()))})
    return path
