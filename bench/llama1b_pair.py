"""A LLaMA-1B-shaped base / fine-tuned pair of checkpoints for the engine benchmarks (issue 8).

    python bench/llama1b_pair.py [OUT_DIR]          # default /tmp/lab-bench/llama1b; ~2 min, 5 GB of disk

Writes ``OUT_DIR/base/`` and ``OUT_DIR/ft/``, each a transformers ``LlamaForCausalLM`` folder
saved with ``save_pretrained(..., max_shard_size="1GB")`` in bfloat16 (about 2.5 GB: three
safetensors shards and ``model.safetensors.index.json``), and ``OUT_DIR/COMPLETE`` (JSON: the
recipe) once both are written. A folder that already holds both and the marker with the same
recipe is left as it is, so the script is cheap to call before every benchmark; anything else in
``base/`` and ``ft/`` is replaced.

The shapes are Llama-3.2-1B's (``LlamaConfig``: hidden 2048, intermediate 8192, 16 layers,
32 query and 8 key/value heads of 64, vocabulary 128256, tied embeddings, llama3 RoPE with
θ = 500000 and factor 32, RMSNorm ε = 1e-5): 112 projection matrices (per layer q and o
2048×2048, k and v 512×2048, gate and up 8192×2048, down 2048×8192) and the 128256×2048
embedding, which ``lm_head`` shares, so it is stored once. The weights are random, not
Llama's: transformers' own seeded initialisation (normal, std 0.02; RMSNorm weights 1).

The fine-tuned model is the base plus, on every 2-D tensor W, a seeded Gaussian update
U = 1e-2 · std(W) · N(0, 1), drawn from a generator seeded by (seed, tensor name) and added in
float32 to the bfloat16-rounded base, then rounded to bfloat16 again. The update is 1 % of a
typical entry, above bfloat16's half-ulp (≤ 0.4 % of an entry): the stored ΔW = ft − base is U
plus rounding noise (relative Frobenius error 0.17 on every tensor; the marker records the range)
and is non-zero in 83 % of the entries, so every module is a dense update that the probes analyse
in full (none is skipped as unchanged). 1-D tensors (the norms) are not changed.

Memory: one model in float32 while initialising (~5 GB), then bfloat16 (~2.5 GB) plus one
tensor's float32 temporaries (≤ 3 GB for the embedding); peak RSS 6.4 GB, 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import zlib
from pathlib import Path

DEFAULT_OUT = Path("/tmp/lab-bench/llama1b")
MARKER = "COMPLETE"
MAX_SHARD_SIZE = "1GB"
RELATIVE_UPDATE = 1e-2

# Llama-3.2-1B's config.json, less the tokenizer ids that do not matter here
LLAMA_3_2_1B = dict(
    vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
    num_attention_heads=32, num_key_value_heads=8, head_dim=64, hidden_act="silu",
    max_position_embeddings=131072, initializer_range=0.02, rms_norm_eps=1e-5,
    tie_word_embeddings=True, attention_bias=False, mlp_bias=False, bos_token_id=128000, eos_token_id=128001,
    rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "high_freq_factor": 4.0,
                     "low_freq_factor": 1.0, "original_max_position_embeddings": 8192},
)


def recipe(seed: int) -> dict:
    """Everything that determines the pair's bytes (compared with the marker of an existing pair)."""
    return {"config": LLAMA_3_2_1B, "seed": seed, "relative_update": RELATIVE_UPDATE, "dtype": "bfloat16",
            "max_shard_size": MAX_SHARD_SIZE}


def is_complete(out: Path, seed: int = 0) -> bool:
    """Whether ``out`` already holds both checkpoints made with this recipe."""
    marker = out / MARKER
    if not marker.is_file():
        return False
    try:
        done = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    return done.get("recipe") == json.loads(json.dumps(recipe(seed))) and all(
        (out / name / "model.safetensors.index.json").is_file() for name in ("base", "ft"))


def update_(name: str, weight, seed: int, relative: float = RELATIVE_UPDATE) -> float:
    """Add the seeded update to one bfloat16 tensor in place; return ‖ΔW_bf16 − U‖_F / ‖U‖_F."""
    import torch

    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    w = weight.detach().float()
    u = torch.randn(w.shape, generator=gen, dtype=torch.float32)
    u.mul_(relative * float(w.std()))
    new = (w + u).to(weight.dtype)
    weight.detach().copy_(new)
    delta = new.float().sub_(w)
    err = float(torch.linalg.vector_norm(delta.sub_(u)) / torch.linalg.vector_norm(u))
    return err


def build(out: Path, seed: int = 0) -> dict:
    """Write ``out/base`` and ``out/ft`` (unless already complete); return the marker's content."""
    if is_complete(out, seed):
        print(f"{out}: pair already complete, left as it is")
        return json.loads((out / MARKER).read_text())
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)
    for name in ("base", "ft"):
        shutil.rmtree(out / name, ignore_errors=True)
    config = LlamaConfig(**LLAMA_3_2_1B)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)  # float32 while initialising (transformers' seeded init)
    model.to(torch.bfloat16)
    model.eval()
    model.save_pretrained(out / "base", max_shard_size=MAX_SHARD_SIZE)
    print(f"base written ({time.perf_counter() - t0:.0f} s)")

    errors = {}
    with torch.no_grad():
        for name, param in model.named_parameters():  # a tied weight is listed once
            if param.ndim == 2:
                errors[name] = update_(name, param, seed)
    model.save_pretrained(out / "ft", max_shard_size=MAX_SHARD_SIZE)
    first_q = next(n for n in errors if n.endswith("q_proj.weight"))
    print(f"ft written ({time.perf_counter() - t0:.0f} s); {len(errors)} 2-D tensors updated; "
          f"‖ΔW_bf16 − U‖/‖U‖ = {errors[first_q]:.3f} for {first_q}")
    files = {name: sorted(p.name for p in (out / name).glob("*.safetensors")) for name in ("base", "ft")}
    done = {"recipe": recipe(seed), "updated_tensors": len(errors),
            "relative_rounding_error": {"min": min(errors.values()), "max": max(errors.values())},
            "files": files, "seconds": round(time.perf_counter() - t0, 1)}
    (out / MARKER).write_text(json.dumps(done, indent=2))  # last: a partial pair never looks complete
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, nargs="?", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    build(args.out, args.seed)


if __name__ == "__main__":
    main()
