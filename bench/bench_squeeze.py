"""lab squeeze against the same compression through a dense ΔW, and MPS Adaptation against LoRA.

1. A LLaMA-7B-shaped LoRA adapter (r = 64 on q, k, v, o of `--layers` layers, `--width` wide; the
   issue's size: 32 layers, 4096) is written as a real PEFT adapter folder (float32 safetensors and
   adapter_config.json, seeded factors), then:

   * lab: ``lab.squeeze.api.squeeze(adapter, out, rank=16)``, end to end (read, exact SVD from the
     factors by QR of both sides and a 64×64 SVD, write the PEFT adapter and the squeeze table);
   * dense: for `--dense-modules` of the modules (a 4096×4096 float64 SVD takes tens of seconds
     here), ΔW = s·B·A in float64, ``torch.linalg.svd`` and the rank-16 factors; its time per
     module × the number of modules is the dense compression's time (the modules are alike).

   The two answers are compared on those modules (relative Frobenius difference of the rank-16
   updates, both in float64).
2. MPS Adaptation's module (r = 256, χ = 32, d1 = d2 = 64, the paper's setting) against PEFT's LoRA
   Linear at (nearly) equal trainable parameters (r = 192), forward + backward on `--tokens` tokens,
   both with the frozen 4096×4096 layer and adapter path alone, interleaved repeats, min and median.

Writes bench/results/squeeze.json.

    python bench/bench_squeeze.py --layers 2 --dense-modules 1 --repeats 2   # a quick run
    python bench/bench_squeeze.py                                            # the issue's size
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402
from timing import interleaved  # noqa: E402

ROLES = ("q_proj", "k_proj", "v_proj", "o_proj")


def write_adapter(folder: Path, width: int, layers: int, r: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A PEFT LoRA adapter folder of a LLaMA shape with seeded factors; returns them by module."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors, factors = {}, {}
    for layer in range(layers):
        for role in ROLES:
            module = f"model.layers.{layer}.self_attn.{role}"
            A = (rng.standard_normal((r, width)) / math.sqrt(width)).astype(np.float32)
            B = (0.02 * rng.standard_normal((width, r))).astype(np.float32)
            tensors[f"base_model.model.{module}.lora_A.weight"] = A
            tensors[f"base_model.model.{module}.lora_B.weight"] = B
            factors[module] = (B, A)
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {"peft_type": "LORA", "r": r, "lora_alpha": 2 * r, "target_modules": list(ROLES), "lora_dropout": 0.0,
              "bias": "none", "fan_in_fan_out": False, "base_model_name_or_path": "llama-7b-shaped", "task_type": "CAUSAL_LM"}
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return factors


def dense_squeeze(B: np.ndarray, A: np.ndarray, scale: float, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same compression through a dense ΔW: form it, torch.linalg.svd, keep rank k."""
    M = scale * (torch.from_numpy(B).double() @ torch.from_numpy(A).double())
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    root = S[:k].sqrt()
    return U[:, :k] * root, root[:, None] * Vh[:k]


def squeeze_part(args) -> dict:
    from lab.squeeze.api import squeeze

    tmp = Path(tempfile.mkdtemp(prefix="bench_squeeze_"))
    try:
        t0 = time.perf_counter()
        factors = write_adapter(tmp / "adapter", args.width, args.layers, args.r)
        t_write = time.perf_counter() - t0
        scale = 2.0
        t0 = time.perf_counter()
        done = squeeze(tmp / "adapter", tmp / "out", rank=args.k, results=tmp / "results")
        t_lab = time.perf_counter() - t0
        kept = {sq.module: sq.merged for sq in done.modules}
        names = list(factors)[: args.dense_modules]
        dense_times, diffs = [], []
        for name in names:
            B, A = factors[name]
            t0 = time.perf_counter()
            Bd, Ad = dense_squeeze(B, A, scale, args.k)
            dense_times.append(time.perf_counter() - t0)
            dense = (Bd @ Ad).numpy()
            mine = kept[name].to_dense()
            diffs.append(float(np.linalg.norm(mine - dense) / np.linalg.norm(dense)))
        modules = len(factors)
        per_module = float(np.median(dense_times))
        return {"width": args.width, "layers": args.layers, "modules": modules, "r": args.r, "k": args.k,
                "adapter_bytes": (tmp / "adapter" / "adapter_model.safetensors").stat().st_size,
                "write_input_s": t_write, "lab_squeeze_s": t_lab, "lab_per_module_s": t_lab / modules,
                "dense_modules_timed": len(names), "dense_per_module_s": dense_times,
                "dense_total_s_extrapolated": per_module * modules,
                "lab_over_dense": t_lab / (per_module * modules), "max_rel_diff_vs_dense": max(diffs)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def mps_part(args) -> dict:
    from peft import LoraConfig, get_peft_model

    from lab.finetune.mps import MPSLinear
    from lab.finetune.mps_layout import trainable_params

    width, r_mps, chi, d1 = args.width, 256, 32, 64
    d2 = width // d1
    p_mps = trainable_params(width, d1, d2, chi, r_mps)
    r_lora = max(1, round(p_mps / (2 * width)))
    torch.manual_seed(0)
    mps = MPSLinear(torch.nn.Linear(width, width, bias=False), r_mps, chi, d1, d2, alpha=2 * r_mps)
    lora = get_peft_model(torch.nn.Sequential(torch.nn.Linear(width, width, bias=False)),
                          LoraConfig(r=r_lora, lora_alpha=2 * r_lora, target_modules=["0"]))
    with torch.no_grad():  # nonzero B on both, so every product is a real one
        mps.mps_B.normal_(0, 0.01)
        for n, p in lora.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.01)
    p_lora = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    x = torch.randn(args.tokens, width)

    def step(module):
        def run():
            module(x).square().mean().backward()
            for p in module.parameters():
                p.grad = None
        return run

    def mps_path():
        lead = x.shape[:-1]
        t = x.reshape(*lead, d1, d2) @ mps.mps_C2.T
        a = t.reshape(*lead, d1 * chi) @ mps.mps_C1.reshape(r_mps, d1 * chi).T
        (mps.scale * (a @ mps.mps_B.T)).square().mean().backward()
        for p in mps.parameters():
            p.grad = None

    layer = lora.base_model.model[0]

    def lora_path():
        y = layer.lora_B["default"](layer.lora_A["default"](x)) * layer.scaling["default"]
        y.square().mean().backward()
        for p in lora.parameters():
            p.grad = None

    timings = interleaved({"mps_layer": step(mps), "lora_layer": step(lora),
                           "mps_path": mps_path, "lora_path": lora_path}, args.repeats)
    ratio = {k: timings[f"mps_{k}"]["min_s"] / timings[f"lora_{k}"]["min_s"] for k in ("layer", "path")}
    return {"width": width, "tokens": args.tokens, "mps": {"r": r_mps, "chi": chi, "d1": d1, "d2": d2, "params": p_mps},
            "lora": {"r": r_lora, "params": p_lora}, "timings": timings,
            "mps_over_lora_layer": ratio["layer"], "mps_over_lora_path": ratio["path"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--r", type=int, default=64)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--dense-modules", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS and torch threads for both sides (one: on this shared 2-core machine oversubscribed "
                             "OpenBLAS threads made a 1024×64 QR take seconds)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/squeeze.json"))
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=args.threads)
    torch.set_num_threads(args.threads)
    result = {"machine": describe(), "squeeze": squeeze_part(args), "mps_vs_lora": mps_part(args)}
    result["machine"]["load_average_end"] = os.getloadavg()
    result["threads"] = args.threads
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: v for k, v in result["squeeze"].items()} | {k: v for k, v in result["mps_vs_lora"].items() if k != "timings"}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
