"""Entanglement profile benchmark: lab vs quimb, and lab vs the single central-cut floor.

    python bench/bench_entanglement.py            # 4096×4096, r = 16; writes bench/results/entanglement.json

Measured side by side in one process, interleaved (see bench/timing.py):

* dense: a seeded 4096×4096 float32 Gaussian matrix, entropies at all 23 cuts of its 24-qubit
  chain, by lab (:func:`lab.kernels.profile.entanglement_profile`) and by quimb
  (``MatrixProductState.from_dense(ψ, dims, cutoff=0)`` then ``entropy(k)`` at every cut, told
  where the orthogonality centre is and walked from the right so each cut moves it one site: the
  cheapest way to use quimb here). The floor is what one cut alone costs with lab's own kernels
  (:mod:`lab.kernels.linalg`): the float64 central-cut Gram matrix (4096×4096) and its eigenvalues,
  from the float32 input.
* LoRA: B (4096×16), A (16×4096), scale 2, profile from the factors by lab vs quimb's dense path
  on s·B·A.
* ``lab analyze`` (issue 23 §1): the same dense matrix as the update of a full fine-tune, a base and
  a fine-tuned folder of one float32 4096×4096 tensor each (``--pair-dir``), analysed by
  ``lab analyze ft --base base --probes entanglement`` in a subprocess: the whole command (Python's
  start, imports, hashing and reading both files, ΔW = W_ft − W in float64, all cuts, the tables
  written), wall time and the child's CPU time. Its floors, in this process: ``floor_central_cut``
  (above, lab's kernels: MKL's eigensolver) and ``floor_numpy`` (the same Gram, eigenvalues by
  ``numpy.linalg.eigvalsh``), both from the float32 matrix already in memory.

Targets (issue 3): dense lab ≤ quimb/10 and ≤ 1.5 × floor; LoRA lab ≥ 200× faster than quimb.
Issue 23: ``lab analyze`` ≤ 1.3 × the floor and ≤ 0.08 × quimb.
Agreement is checked too: the largest |S_lab − S_quimb| over cuts, nats.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import quimb.tensor as qtn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import describe  # noqa: E402
from timing import interleaved  # noqa: E402

from lab.kernels.factored import Factors  # noqa: E402
from lab.kernels.linalg import gram, psd_eigvals  # noqa: E402
from lab.kernels.profile import entanglement_profile  # noqa: E402
from lab.kernels.tensorize import sites  # noqa: E402


def quimb_entropies(matrix: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    """Entropies (nats) at cuts 1 … N−1 from quimb's exact MPS of vec(matrix)/‖matrix‖."""
    psi = np.ascontiguousarray(matrix, dtype=np.float64).reshape(-1)
    psi = psi / np.linalg.norm(psi)
    mps = qtn.MatrixProductState.from_dense(psi, list(dims), cutoff=0.0)
    n = len(dims)
    info = {"cur_orthog": (n - 1, n - 1)}  # from_dense (absorb="right") leaves the norm on the last site
    bits = {k: mps.entropy(k, info=info) for k in range(n - 1, 0, -1)}
    return np.array([bits[k] * math.log(2.0) for k in range(1, n)])


def central_cut_floor(matrix: np.ndarray) -> float:
    """Entropy at the central cut alone, with lab's own kernels: float64 Gram + eigenvalues."""
    psi = np.ascontiguousarray(matrix, dtype=np.float64).reshape(-1)
    st = sites(*matrix.shape)
    k = int(np.argmin(np.abs(np.log(st.d_left) - np.log(st.d_right))))  # the most balanced cut
    g = gram(psi.reshape(int(st.d_left[k]), -1))
    p = psd_eigvals(g) / float(np.trace(g))
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def central_cut_floor_numpy(matrix: np.ndarray) -> float:
    """The central cut alone as plain numpy does it: float64 Gram (BLAS syrk) + ``numpy.linalg.eigvalsh``."""
    psi = np.ascontiguousarray(matrix, dtype=np.float64).reshape(-1)
    st = sites(*matrix.shape)
    k = int(np.argmin(np.abs(np.log(st.d_left) - np.log(st.d_right))))
    x = psi.reshape(int(st.d_left[k]), -1)
    g = x @ x.T
    p = np.clip(np.linalg.eigvalsh(g), 0.0, None) / float(np.trace(g))
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def write_pair(folder: Path, update: np.ndarray) -> tuple[Path, Path]:
    """``folder/base`` and ``folder/ft``: one float32 tensor each, ft − base = ``update`` (rounded to float32)."""
    from safetensors.numpy import save_file

    base = np.random.default_rng(1).standard_normal(update.shape, dtype=np.float32)
    out = []
    for name, w in (("base", base), ("ft", base + update)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        save_file({"model.layers.0.mlp.proj.weight": np.ascontiguousarray(w, dtype=np.float32)},
                  str(folder / name / "model.safetensors"))
        out.append(folder / name)
    return out[0], out[1]


def analyze_command(base: Path, ft: Path, out: Path, probes: str) -> list[str]:
    lab = Path(sys.executable).parent / "lab"
    return [str(lab), "analyze", str(ft), "--base", str(base), "--probes", probes, "--out", str(out),
            "--run", f"bench-{probes.replace(',', '-')}", "--overwrite", "--quiet"]


def run_timed(cmd: list[str], cpu: dict[str, list[float]], name: str) -> None:
    """Run ``cmd``; append the child's CPU seconds (user + system) to ``cpu[name]``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, timeout=3600, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu.setdefault(name, []).append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))


def timed_cpu(fn, cpu: dict[str, list[float]], name: str):
    def run():
        c0 = time.process_time()
        fn()
        cpu.setdefault(name, []).append(time.process_time() - c0)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5, help="rounds for lab and the floor")
    ap.add_argument("--quimb-repeats", type=int, default=1, help="rounds for quimb (each takes minutes at 4096)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "entanglement.json")
    ap.add_argument("--pair-dir", type=Path, default=Path("/tmp/lab-bench/dense4096"),
                    help="where the base/ft folders of the `lab analyze` case are written")
    ap.add_argument("--no-analyze", action="store_true", help="leave out the `lab analyze` case")
    ap.add_argument("--no-quimb", action="store_true", help="leave out quimb (ratios against it are then absent)")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    n = args.size
    dense = rng.standard_normal((n, n), dtype=np.float32)
    B = rng.standard_normal((n, args.rank), dtype=np.float32).astype(np.float64)
    A = rng.standard_normal((args.rank, n), dtype=np.float32).astype(np.float64)
    lora = Factors(B, A, 2.0)
    lora_dense = lora.to_dense()
    dims = sites(n, n).dims
    result = {"machine_before": describe(), "size": n, "rank": args.rank, "n_sites": len(dims)}

    # agreement first (also warms every code path up)
    lab_dense, lab_lora = entanglement_profile(dense).entropy, entanglement_profile(lora).entropy
    runs = {}
    cpu: dict[str, list[float]] = {}
    tasks = {
        "lab_all_cuts": timed_cpu(lambda: entanglement_profile(dense), cpu, "lab_all_cuts"),
        "floor_central_cut": timed_cpu(lambda: central_cut_floor(dense), cpu, "floor_central_cut"),
        "floor_numpy": timed_cpu(lambda: central_cut_floor_numpy(dense), cpu, "floor_numpy"),
    }
    if not args.no_analyze:
        base_dir, ft_dir = write_pair(args.pair_dir, dense)
        out_dir = args.pair_dir / "results"
        env_note = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        result["analyze"] = {"command": analyze_command(base_dir, ft_dir, out_dir, "entanglement"), "env": env_note}
        for probes in ("entanglement", "deltas,entanglement,spectra"):
            cmd = analyze_command(base_dir, ft_dir, out_dir, probes)
            subprocess.run(cmd, check=True, timeout=3600, stdout=subprocess.DEVNULL)  # warm-up: page cache, .pyc
            name = "lab_analyze" if probes == "entanglement" else "lab_analyze_default_probes"
            tasks[name] = (lambda cmd=cmd, name=name: run_timed(cmd, cpu, name))
        import pandas as pd  # the tables of the warm-up run equal the in-process profile

        table = pd.read_parquet(out_dir / "bench-entanglement" / "entanglement.parquet").sort_values("cut")
        analyzed = table["entropy"].to_numpy()
        base32 = np.random.default_rng(1).standard_normal(dense.shape, dtype=np.float32)
        delta = (base32 + dense).astype(np.float64) - base32.astype(np.float64)
        result["analyze"]["max_abs_diff_vs_profile_of_stored_delta_nats"] = float(
            np.max(np.abs(analyzed - entanglement_profile(delta).entropy)))

    def quimb_dense():
        runs["quimb_dense"] = quimb_entropies(dense, dims)

    def quimb_lora():
        runs["quimb_lora"] = quimb_entropies(lora_dense, dims)

    result["dense"] = interleaved(tasks, args.repeats)
    for name, seconds in cpu.items():
        result["dense"][name]["cpu_min_s"] = min(seconds)
        result["dense"][name]["cpu_runs_s"] = seconds
    if not args.no_quimb:
        result["dense"].update(interleaved({"quimb_all_cuts": timed_cpu(quimb_dense, cpu, "quimb")}, args.quimb_repeats))
        result["dense"]["quimb_all_cuts"]["cpu_min_s"] = min(cpu["quimb"])
    result["lora"] = interleaved({"lab_factored": lambda: entanglement_profile(lora)}, max(args.repeats, 20))
    if not args.no_quimb:
        result["lora"].update(interleaved({"quimb_dense_path": quimb_lora}, args.quimb_repeats))
        result["max_abs_diff_nats"] = {
            "dense": float(np.max(np.abs(lab_dense - runs["quimb_dense"]))),
            "lora": float(np.max(np.abs(lab_lora - runs["quimb_lora"]))),
        }
    d, lo = result["dense"], result["lora"]
    ratios = {  # from the least disturbed (minimum) times; medians alongside
        "dense_lab_over_floor": d["lab_all_cuts"]["min_s"] / d["floor_central_cut"]["min_s"],
        "dense_lab_over_floor_median": d["lab_all_cuts"]["median_s"] / d["floor_central_cut"]["median_s"],
        "dense_lab_over_floor_cpu": d["lab_all_cuts"]["cpu_min_s"] / d["floor_central_cut"]["cpu_min_s"],
    }
    if "quimb_all_cuts" in d:
        ratios["dense_lab_over_quimb"] = d["lab_all_cuts"]["min_s"] / d["quimb_all_cuts"]["min_s"]
        ratios["lora_quimb_over_lab"] = lo["quimb_dense_path"]["min_s"] / lo["lab_factored"]["min_s"]
    for name in ("lab_analyze", "lab_analyze_default_probes"):
        if name not in d:
            continue
        for floor in ("floor_central_cut", "floor_numpy"):
            ratios[f"{name}_over_{floor}"] = d[name]["min_s"] / d[floor]["min_s"]
            ratios[f"{name}_over_{floor}_median"] = d[name]["median_s"] / d[floor]["median_s"]
            ratios[f"{name}_over_{floor}_cpu"] = d[name]["cpu_min_s"] / d[floor]["cpu_min_s"]
        if "quimb_all_cuts" in d:
            ratios[f"{name}_over_quimb"] = d[name]["min_s"] / d["quimb_all_cuts"]["min_s"]
            ratios[f"{name}_over_quimb_cpu"] = d[name]["cpu_min_s"] / d["quimb_all_cuts"]["cpu_min_s"]
    result["ratios"] = ratios
    result["machine_after"] = {"load_average": describe()["load_average"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({"ratios": result["ratios"], "max_abs_diff_nats": result.get("max_abs_diff_nats"),
                      "analyze": result.get("analyze")}, indent=2))


if __name__ == "__main__":
    main()
