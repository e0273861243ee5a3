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
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--out", type=Path, default=Path("bench/results/merge.json"))
    args = parser.parse_args()
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads)
        torch.set_num_threads(args.threads)

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


if __name__ == "__main__":
    main()
