"""The token-cut probe's cost over the forward passes it needs (issue 21, Performance).

    python bench/bench_token_cuts.py                                   # MiniLM, 16 windows × L ∈ {64, 128, 256}
    python bench/bench_token_cuts.py --seq-len 32,64 --windows 2 --out /tmp/tc.json   # a quick check

In one process, on the same windows (:func:`lab.probes.windows.make_windows` of the standard-library
docstrings), window by window: the forward pass ``model(input_ids, output_attentions=True)`` is
timed, then :func:`lab.probes.token_cuts.token_cut_spectra` on each layer's (heads, L, L) P of that
pass (both blocks: MiniLM is an encoder), once with every cut ℓ = 1 … L−1 and once with each
``--capped`` number of cuts (the ``attention.token_cuts`` option). One untimed pass per length first.

Reported per L and in all: CPU and wall seconds of the forward passes and of each token-cut variant,
and ratio = token-cut seconds / forward seconds (target ≤ 1). CPU seconds are the number a loaded
machine distorts least; the load average before and after is recorded. The work per head at one cut
is one float64 eigensolve of the smaller side's Gram (min(ℓ, L−ℓ) square): Σ_ℓ min(ℓ, L−ℓ)³ ≈ L⁴/32
per head and block, against the forward pass's O(L·d² + L²·d) per layer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seq-len", default="64,128,256")
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--capped", default="32,64", help="token_cuts values to time beside every cut (comma-separated)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "token_cuts.json"))
    args = ap.parse_args()
    seq_len = tuple(int(x) for x in args.seq_len.split(","))
    capped = tuple(int(x) for x in args.capped.split(",") if x)

    import numpy as np
    import torch

    from lab.engine.subjects import ModelSubject
    from lab.finetune.models import minilm_path
    from lab.probes.token_cuts import token_cut_spectra, token_cuts
    from lab.probes.windows import make_windows
    from machine import describe  # noqa: E402  (bench/machine.py)

    load_before = os.getloadavg()
    base = ModelSubject("base", None, Path(minilm_path()), "base")
    model, tok = base.load(), base.tokenizer()
    windows = make_windows(tok, base.texts(), seq_len, args.windows)
    variants = {"every": 0, **{f"capped_{n}": n for n in capped}}
    seconds = {L: {k: [0.0, 0.0] for k in ("forward", *variants)} for L in seq_len}
    with torch.no_grad():
        for L in seq_len:  # untimed: first-call costs are nobody's
            model(input_ids=torch.tensor([next(w.ids for w in windows if w.seq_len == L)]), output_attentions=True)
        for w in windows:
            t0, c0 = _clock()
            out = model(input_ids=torch.tensor([w.ids]), output_attentions=True)
            t1, c1 = _clock()
            acc = seconds[w.seq_len]
            acc["forward"][0] += t1 - t0
            acc["forward"][1] += c1 - c0
            Ps = [a[0].to(torch.float64).numpy() for a in out.attentions]
            for name, n in variants.items():
                cuts = token_cuts(w.seq_len, n)
                t0, c0 = _clock()
                for P in Ps:
                    token_cut_spectra(P, cuts, causal=False)
                t1, c1 = _clock()
                acc[name][0] += t1 - t0
                acc[name][1] += c1 - c0
            print(f"L = {w.seq_len} window {w.index}: " + ", ".join(f"{k} {v[1]:.2f}" for k, v in acc.items()), flush=True)
    per_length = {L: {k: {"wall_s": v[0], "cpu_s": v[1]} for k, v in s.items()} for L, s in seconds.items()}
    total = {k: {"wall_s": float(np.sum([s[k]["wall_s"] for s in per_length.values()])),
                 "cpu_s": float(np.sum([s[k]["cpu_s"] for s in per_length.values()]))} for k in ("forward", *variants)}
    ratios = {k: {"cpu": total[k]["cpu_s"] / total["forward"]["cpu_s"],
                  "wall": total[k]["wall_s"] / total["forward"]["wall_s"],
                  "per_length_cpu": {L: per_length[L][k]["cpu_s"] / per_length[L]["forward"]["cpu_s"] for L in seq_len}}
              for k in variants}
    for k, r in ratios.items():
        print(k, {"cpu": round(r["cpu"], 3), "wall": round(r["wall"], 3),
                  "per_length_cpu": {L: round(v, 3) for L, v in r["per_length_cpu"].items()}})
    machine = describe()
    machine["load_before"] = load_before
    machine["load_after"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"seq_len": seq_len, "windows": args.windows, "variants": variants,
                                          "per_length": per_length, "total": total, "ratios": ratios,
                                          "machine": machine}, indent=2, default=str))


if __name__ == "__main__":
    main()
