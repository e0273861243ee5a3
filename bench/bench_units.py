"""Per-module cost of the weight probes on the LLaMA-1B-shaped pair, against the floor (issue 8).

The full run (``bench_memory.py``) takes ~30 minutes on an idle 2-core machine and its wall time
means little on a busy one. This measures what the wall time is made of, in CPU seconds on one
thread (the figure a loaded machine distorts least): for one module of every distinct 2-D shape of
``bench/llama1b_pair.py``'s pair,

* the unit: ``lab.analyze`` of that one module with ``deltas, entanglement, spectra`` in this
  process (serial engine, BLAS and torch on one thread); the unit's CPU seconds (read + probes,
  not the run's set-up) and their split by probe, from cProfile with a CPU timer;
* the floor of that shape as ``bench_memory.py`` defines it: the Gram matrix of the central cut
  of its MPS chain and its eigenvalues, on a random matrix of that shape (one thread).

The model's totals are Σ over shapes of (modules of that shape) × (cost per module); the controls
(one random matrix per shape) add one unit per shape to both sides. One throwaway unit runs first, so
that no shape is charged the process's one-time imports. Writes bench/results/units.json.

    python bench/bench_units.py [--pair /tmp/lab-bench/llama1b] [--shapes 2048x2048,8192x2048]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_memory import eigensolve_seconds, matrices  # noqa: E402

PROBE_FUNCTIONS = {"entanglement": ("_run", "lab/probes/entanglement.py"), "spectra": ("_run", "lab/probes/spectra.py"),
                   "deltas": ("_run", "lab/probes/inventory.py"), "unit": ("run_unit", "lab/engine/execute.py"),
                   "read": ("read_module", "lab/checkpoints/formats.py")}


def probe_seconds(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative CPU seconds of each probe's ``_run``, of the whole unit and of its read, in a profile."""
    out = {}
    for (file, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        for what, (function, suffix) in PROBE_FUNCTIONS.items():
            if name == function and file.endswith(suffix):
                out[what] = out.get(what, 0.0) + cumulative
    return out


def unit_cost(pair: Path, module: str, options: dict | None = None) -> dict:
    import lab

    with tempfile.TemporaryDirectory() as out:
        profile = cProfile.Profile(time.process_time)  # CPU seconds: what a loaded machine distorts least
        c0, t0 = time.process_time(), time.perf_counter()
        profile.enable()
        run = lab.analyze(pair / "ft", base=pair / "base", out=out, run="unit", probes=["deltas", "entanglement", "spectra"],
                          modules=f"^{re.escape(module)}$", options=options, progress=False)
        profile.disable()
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        units = run.manifest.get("units") or []
        seconds = [u.get("seconds") for u in (units if isinstance(units, list) else units.values()) if isinstance(u, dict)]
    parts = probe_seconds(pstats.Stats(profile))
    # the unit's CPU (read + probes); the rest of cpu_s is lab.analyze's set-up (imports, input hashes)
    return {"cpu_s": round(parts.pop("unit", cpu), 2), "analyze_cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
            "unit_wall_s": round(sum(s for s in seconds if s), 2), "cpu_by_part_s": {k: round(v, 2) for k, v in parts.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", type=Path, default=Path("/tmp/lab-bench/llama1b"))
    parser.add_argument("--shapes", default=None, help="only these shapes, e.g. 2048x2048,8192x2048")
    parser.add_argument("--options", type=json.loads, default=None,
                        help='probe options as JSON, e.g. \'{"spectra": {"intruder_reference": 16}}\'')
    parser.add_argument("--out", type=Path, default=HERE / "results" / "units.json")
    args = parser.parse_args()
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = "1"
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    mats = {k.removesuffix(".weight"): v for k, v in matrices(args.pair / "ft").items()}
    counts = Counter(tuple(v["shape"]) for v in mats.values())
    wanted = None if args.shapes is None else {tuple(int(n) for n in s.split("x")) for s in args.shapes.split(",")}
    shapes = []
    with threadpool_limits(limits=1):
        # a throwaway unit of the smallest shape first: imports and first-call set-up (SciPy's sparse
        # solvers, PEFT, safetensors) are paid once per process in a real run, not once per module
        smallest = min(counts, key=lambda s: s[0] * s[1])
        unit_cost(args.pair, next(k for k, v in mats.items() if tuple(v["shape"]) == smallest), args.options)
        for shape, count in sorted(counts.items(), key=lambda kv: kv[0][0] * kv[0][1]):
            if wanted is not None and shape not in wanted:
                continue
            module = next(k for k, v in mats.items() if tuple(v["shape"]) == shape)
            cost = unit_cost(args.pair, module, args.options)
            floor_wall, floor_cpu = eigensolve_seconds(*shape, repeats=1, threads=1)
            row = {"shape": list(shape), "modules": count, "example": module, **cost, "floor_cpu_s": round(floor_cpu, 2),
                   "ratio": round(cost["cpu_s"] / floor_cpu, 2), "load": os.getloadavg()[0]}
            print(json.dumps(row), flush=True)
            shapes.append(row)
    total = sum(r["cpu_s"] * (r["modules"] + 1) for r in shapes)  # + one control per shape
    floor = sum(r["floor_cpu_s"] * (r["modules"] + 1) for r in shapes)
    result = {"pair": str(args.pair), "options": args.options, "shapes": shapes, "model_cpu_s": round(total, 1), "model_floor_cpu_s": round(floor, 1),
              "model_ratio": round(total / floor, 2) if floor else None}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "shapes"}))


if __name__ == "__main__":
    main()
