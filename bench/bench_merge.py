"""lab merge --method svd / lego against PEFT's add_weighted_adapter(combination_type="svd").

Eight LoRA adapters (r = 16 on q_proj and v_proj) of a LLaMA config `--width` wide with
`--layers` layers (the issue's size: 4096 and 4) are saved with peft; then, side by side in one
process, on the same inputs:

* PEFT: PeftModel with all eight loaded, ``add_weighted_adapter(names, weights, "m",
  combination_type="svd", svd_rank=k)`` (a dense ΔW and a full SVD per module);
* lab: :func:`lab.merge.adapters.merge_modules` with method svd (QR of the stacked factors and a
  128×128 SVD), and with method lego (k-means over the 128 pooled units per module).

The reading of the adapters is timed apart (both sides read the same files). The two svd answers
are compared per module (relative Frobenius difference of the updates; the rank-k answer is
unique when σ_k > σ_{k+1}). Writes a JSON with the timings and ratios.

    python bench/bench_merge.py --width 1024 --layers 2   # a quick run
    python bench/bench_merge.py                            # the issue's size (~GBs, minutes)

``--task-vectors`` (issue 26 §1) times instead the task-vector methods against PEFT's
``add_weighted_adapter(..., combination_type="<method>_svd", density=d, svd_rank=k)`` side by side,
on two scenes: the packaged all-MiniLM-L6-v2 (two r = 8 LoRA adapters on every query, key, value
and dense module of its 6 layers, 384 wide) and one 4096×4096 module (q_proj of a one-layer LLaMA
config 4096 wide, two r = 16 adapters); k = the adapters' rank, d = 0.5, DARE seeded the same on
both sides. Both sides start from the adapters already loaded (lab: read into factors; PEFT: loaded
into one PeftModel). lab's time includes its error accounting (the merge table's columns). The
merged updates are compared per module (relative Frobenius difference; PEFT computes in float32).
Each row has wall seconds and CPU seconds (``time.process_time``, least of the repeats: on a shared,
loaded machine both sides' wall times stretch with the load), and for DARE the CPU seconds of
drawing the same masks alone (``mask_draw_cpu_s``: ``torch.bernoulli``, PEFT's draw; ``lab_mask_draw_cpu_s``:
the lab's numpy MT19937 draw, :func:`lab.kernels.task_vectors.keep_masks`).

    python bench/bench_merge.py --task-vectors --threads 1      # both scenes, MiniLM 3 interleaved runs (min)
    python bench/bench_merge.py --task-vectors --threads 1 --scenes minilm --out bench/results/merge_task_vectors_minilm.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--adapters", type=int, default=8)
    parser.add_argument("--r", type=int, default=16)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS and torch threads for both sides (1 on a loaded machine: multithreaded OpenBLAS "
                             "under oversubscription made a 1024×128 QR take seconds instead of 30 ms)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--task-vectors", action="store_true", help="the issue 26 benchmark (see the docstring)")
    parser.add_argument("--scenes", default="minilm,4096", help="task-vector scenes to run (--task-vectors)")
    parser.add_argument("--methods", default="ties,dare_ties,magnitude_prune,dare_linear",
                        help="task-vector methods to time (--task-vectors); the 4096 scene times the first two")
    args = parser.parse_args()
    if args.threads is not None:
        import scipy.linalg  # noqa: F401  scipy's own OpenBLAS (PROPACK's) loads with it: limited only once loaded
        import scipy.sparse.linalg  # noqa: F401
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads)
        torch.set_num_threads(args.threads)
    if args.task_vectors:
        return task_vectors(args)
    args.out = args.out or Path("bench/results/merge.json")

    from peft import LoraConfig, PeftModel, get_peft_model
    from peft.tuners.lora import LoraLayer
    from transformers import LlamaConfig, LlamaForCausalLM

    from lab.merge.adapters import merge_modules, read_adapter

    cfg = LlamaConfig(vocab_size=64, hidden_size=args.width, intermediate_size=64, num_hidden_layers=args.layers,
                      num_attention_heads=max(1, args.width // 128), num_key_value_heads=max(1, args.width // 128),
                      max_position_embeddings=64)
    torch.manual_seed(0)
    base = LlamaForCausalLM(cfg)
    tmp = Path(tempfile.mkdtemp(prefix="bench_merge_"))
    paths = []
    for j in range(args.adapters):
        model = get_peft_model(base, LoraConfig(r=args.r, lora_alpha=2 * args.r, target_modules=["q_proj", "v_proj"]))
        g = torch.Generator().manual_seed(100 + j)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.copy_(0.02 * torch.randn(p.shape, generator=g))
        model.save_pretrained(tmp / f"a{j}")
        base = model.unload()
        paths.append(tmp / f"a{j}")
    weights = [1.0 / args.adapters] * args.adapters

    t0 = time.perf_counter()
    inputs = [read_adapter(p) for p in paths]
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    lab_svd = merge_modules(inputs, weights, "svd", args.k)
    t_svd = time.perf_counter() - t0
    t0 = time.perf_counter()
    merge_modules(inputs, weights, "lego", args.k, seed=0)
    t_lego = time.perf_counter() - t0

    peft_model = PeftModel.from_pretrained(base, paths[0], adapter_name="a0")
    for j, p in enumerate(paths[1:], 1):
        peft_model.load_adapter(p, adapter_name=f"a{j}")
    t0 = time.perf_counter()
    peft_model.add_weighted_adapter([f"a{j}" for j in range(args.adapters)], weights, "m",
                                    combination_type="svd", svd_rank=args.k)
    t_peft = time.perf_counter() - t0

    # the equality check in float64 on PEFT's side too (its float32 SVD alone differs by ~1e-5)
    peft_model.delete_adapter("m")
    peft_model = peft_model.double()
    t0 = time.perf_counter()
    peft_model.add_weighted_adapter([f"a{j}" for j in range(args.adapters)], weights, "m",
                                    combination_type="svd", svd_rank=args.k)
    t_peft64 = time.perf_counter() - t0
    diffs = []
    by_module = {m.module: m for m in lab_svd}
    for name, layer in peft_model.base_model.model.named_modules():
        if isinstance(layer, LoraLayer) and "m" in layer.lora_A:
            peft_delta = layer.get_delta_weight("m").double().numpy()
            mine = by_module[name].merged.to_dense()
            diffs.append(float(np.linalg.norm(mine - peft_delta) / np.linalg.norm(mine)))
    result = {"width": args.width, "layers": args.layers, "adapters": args.adapters, "r": args.r, "k": args.k,
              "read_s": t_read, "lab_svd_s": t_svd, "lab_lego_s": t_lego, "peft_svd_s": t_peft, "peft_svd_float64_s": t_peft64,
              "lab_svd_over_peft": t_svd / t_peft, "lego_over_svd": t_lego / t_svd,
              "max_rel_diff_vs_peft": max(diffs), "modules": len(diffs), "threads": torch.get_num_threads()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def _lora_pair(base, targets, r, root: Path, scale=0.02):
    """Two seeded random LoRA adapters of ``base`` on ``targets``, saved under ``root``; the base back."""
    from peft import LoraConfig, get_peft_model

    paths = []
    for j in range(2):
        model = get_peft_model(base, LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets))
        g = torch.Generator().manual_seed(200 + j)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_" in name:
                    p.copy_(scale * torch.randn(p.shape, generator=g))
        model.save_pretrained(root / f"t{j}")
        base = model.unload()
        paths.append(root / f"t{j}")
    return base, paths


def _side_by_side(scene, base, paths, methods, k, density, order, repeats=1):
    """PEFT's *_svd and lab's merge_modules on the same two adapters, per method: seconds (the least
    disturbed of ``repeats`` interleaved runs, and the median) and agreement."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    from lab.merge.adapters import merge_modules, read_adapter

    inputs = [read_adapter(p) for p in paths]
    peft_model = PeftModel.from_pretrained(base, paths[0], adapter_name="a0")
    peft_model.load_adapter(paths[1], adapter_name="a1")
    inner = peft_model.base_model
    inject = inner.inject_adapter
    inner.inject_adapter = lambda *a, **kw: (inject(*a, **kw), torch.manual_seed(0))[0]  # DARE: seed 0 as the loop starts
    out = []
    for method in methods:
        labs, pefts, lab_cpu, peft_cpu = [], [], [], []
        for rep in range(repeats):
            if rep:
                peft_model.delete_adapter("m")
            t0, c0 = time.perf_counter(), time.process_time()
            mine = merge_modules(inputs, [0.5, 0.5], method, k, seed=0, density=density, order=order)
            labs.append(time.perf_counter() - t0)
            lab_cpu.append(time.process_time() - c0)
            t0, c0 = time.perf_counter(), time.process_time()
            inner.add_weighted_adapter(["a0", "a1"], [0.5, 0.5], "m", combination_type=f"{method}_svd", svd_rank=k,
                                       density=density)
            pefts.append(time.perf_counter() - t0)
            peft_cpu.append(time.process_time() - c0)
        t_lab, t_peft = min(labs), min(pefts)
        by_module = {m.module: m for m in mine}
        diffs = []
        for name, layer in inner.model.named_modules():
            if isinstance(layer, LoraLayer) and "m" in layer.lora_A:
                theirs = layer.get_delta_weight("m").detach().double().numpy()
                if getattr(layer, "fan_in_fan_out", False):
                    theirs = theirs.T
                ours = by_module[name].merged.to_dense()
                diffs.append(float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)))
        peft_model.delete_adapter("m")
        row = {"scene": scene, "method": method, "load_average": list(os.getloadavg()), "modules": len(diffs), "k": k, "density": density, "lab_s": t_lab,
               "peft_s": t_peft, "lab_over_peft": t_lab / t_peft, "lab_median_s": float(np.median(labs)),
               "peft_median_s": float(np.median(pefts)), "repeats": repeats, "max_rel_diff_vs_peft": max(diffs),
               "lab_cpu_s": min(lab_cpu), "peft_cpu_s": min(peft_cpu), "lab_over_peft_cpu": min(lab_cpu) / min(peft_cpu)}
        if method.startswith("dare"):  # the same masks alone: torch.bernoulli (PEFT's draw) and the lab's numpy MT19937
            row["mask_draw_cpu_s"], row["lab_mask_draw_cpu_s"] = _mask_draw_cpu(mine, density, repeats)
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def _mask_draw_cpu(merges, density, repeats) -> tuple[float, float]:
    """CPU seconds (least of ``repeats``) to draw DARE's masks alone, one float32 Bernoulli(d) tensor per
    input and module: with ``torch.bernoulli`` (PEFT's draw) and with the lab's
    :func:`lab.kernels.task_vectors.keep_masks` (the same masks from numpy's MT19937)."""
    from lab.kernels.task_vectors import keep_masks

    shapes = [m.target.shape for m in merges for _ in m.members]
    best_torch = best_lab = float("inf")
    for _ in range(repeats):
        g = torch.Generator().manual_seed(0)
        c0 = time.process_time()
        for shape in shapes:
            torch.bernoulli(torch.full(shape, float(density), dtype=torch.float32), generator=g)
        best_torch = min(best_torch, time.process_time() - c0)
        g = torch.Generator().manual_seed(0)
        c0 = time.process_time()
        for shape in shapes:
            keep_masks([shape], density, g)
        best_lab = min(best_lab, time.process_time() - c0)
    return best_torch, best_lab


def task_vectors(args) -> None:
    """The issue 26 §1 benchmark: task-vector methods against PEFT's *_svd on MiniLM and on a 4096-wide module."""
    from transformers import AutoModel, LlamaConfig, LlamaForCausalLM

    from lab.finetune.models import minilm_path
    from lab.merge.order import model_order

    methods = [m for m in args.methods.split(",") if m]
    tmp = Path(tempfile.mkdtemp(prefix="bench_tv_"))
    rows = []
    scenes = args.scenes.split(",")
    if "minilm" in scenes:
        minilm = AutoModel.from_pretrained(minilm_path())
        base, paths = _lora_pair(minilm, ["query", "key", "value", "dense"], 8, tmp / "minilm")
        rows += _side_by_side("minilm", base, paths, methods, 8, 0.5, model_order(minilm_path(), {}), repeats=3)
    if "4096" not in scenes:
        return _write(args, rows)
    cfg = LlamaConfig(vocab_size=64, hidden_size=4096, intermediate_size=64, num_hidden_layers=1, num_attention_heads=32,
                      num_key_value_heads=32, max_position_embeddings=64)
    torch.manual_seed(0)
    wide = LlamaForCausalLM(cfg)
    base, paths = _lora_pair(wide, ["q_proj"], 16, tmp / "wide")
    rows += _side_by_side("4096", base, paths, methods[:2], 16, 0.5, None)
    _write(args, rows)


def _write(args, rows) -> None:
    result = {"threads": torch.get_num_threads(), "load_average_at_end": list(os.getloadavg()), "rows": rows}
    out = args.out or Path("bench/results/merge_task_vectors.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
