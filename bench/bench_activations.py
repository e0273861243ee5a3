"""The activation probes' own cost over the forward passes they need (issue 9, item 7).

    python bench/bench_activations.py                          # MiniLM, 16 windows × L ∈ {64, 128, 256}
    python bench/bench_activations.py --seq-len 32,64 --windows 4 --out /tmp/act.json   # a quick check

Each measurement runs in a fresh subprocess (so each peak RSS is its own), on the same windows
(:func:`lab.probes.windows.make_windows` of the standard-library docstrings):

* ``forward``: the bare forward passes, ``model(input_ids, output_attentions=True)`` per window,
  nothing kept: what any attention analysis must pay.
* ``attention_prepare``: the attention probe's step on the base (forward with hooks, every head's
  profile, the base's attention written to its float32 files).
* ``attention_unit``: the attention probe on one checkpoint (here the base again, read as a full
  fine-tune of itself: the same forward passes, profiles, the base's files mapped for the total
  variation, the q/v weights compared).
* ``thresholds``: the thresholds probe (forward with projection hooks).

Reported: wall and CPU seconds, peak RSS (``ru_maxrss``), and for each probe
overhead = (probe − forward) / forward (target ≤ 1.0: the entropy work costs no more than running
the model) and peak / forward peak (target ≤ 2). The machine is shared: CPU seconds are the
number a loaded machine distorts least, and both are recorded with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _child(kind: str, seq_len: tuple[int, ...], windows: int) -> dict:
    import torch

    from lab.engine.subjects import ModelSubject
    from lab.finetune.models import minilm_path
    from lab.probes import attention, thresholds
    from lab.probes.windows import make_windows

    path = Path(minilm_path())
    base = ModelSubject("base", None, path, "base")
    model, tok = base.load(), base.tokenizer()
    ws = make_windows(tok, base.texts(), seq_len, windows)
    opts = attention.AttentionOptions(seq_len=seq_len, windows=windows, cache_dir="/tmp/lab-bench/activations")
    prepared = attention._prepare(base, opts, None) if kind == "attention_unit" else None  # not timed
    with torch.no_grad():  # one untimed pass per length in every child: first-call costs are nobody's
        for L in seq_len:
            model(input_ids=torch.tensor([next(w.ids for w in ws if w.seq_len == L)]), output_attentions=True)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    if kind == "forward":
        with torch.no_grad():
            for w in ws:
                model(input_ids=torch.tensor([w.ids]), output_attentions=True)
    elif kind == "attention_prepare":
        attention._prepare(base, opts, None)
    elif kind == "attention_unit":
        ckpt = ModelSubject("self", None, path, "full", base=path, prepared=prepared)
        attention._run(ckpt, opts, None)
    elif kind == "thresholds":
        thresholds.measure(model, ws)
    return {"kind": kind, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_mb": rss_before / 1024, "forward_passes": len(ws)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seq-len", default="64,128,256")
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "activations.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    seq_len = tuple(int(x) for x in args.seq_len.split(","))
    if args.child:
        print(json.dumps(_child(args.child, seq_len, args.windows)))
        return
    from machine import describe  # noqa: E402  (bench/machine.py)

    results = {}
    for kind in ("forward", "attention_prepare", "attention_unit", "thresholds"):
        out = subprocess.run([sys.executable, __file__, "--child", kind, "--seq-len", args.seq_len,
                              "--windows", str(args.windows)], capture_output=True, text=True, check=True)
        results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
        results[kind]["load_after"] = os.getloadavg()[0]
        print(kind, {k: round(v, 2) if isinstance(v, float) else v for k, v in results[kind].items()}, flush=True)
    fwd = results["forward"]
    ratios = {kind: {"overhead_wall": (r["wall_s"] - fwd["wall_s"]) / fwd["wall_s"],
                     "overhead_cpu": (r["cpu_s"] - fwd["cpu_s"]) / fwd["cpu_s"],
                     "peak_over_forward_peak": r["peak_rss_mb"] / fwd["peak_rss_mb"]}
              for kind, r in results.items() if kind != "forward"}
    for kind, r in ratios.items():
        print(kind, {k: round(v, 3) for k, v in r.items()})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"seq_len": seq_len, "windows": args.windows, "results": results,
                                          "ratios": ratios, "machine": describe()}, indent=2, default=str))


if __name__ == "__main__":
    main()
