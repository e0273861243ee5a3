"""The esd probe beside WeightWatcher on the same matrices: agreement, not speed (issue 25 §1).

    python bench/bench_esd.py                  # lab here, WeightWatcher in /tmp/wwvenv, -> bench/results/esd_weightwatcher.json
    python bench/bench_esd.py --tool weightwatcher --matrices F.npz --out F.json   # that half alone (run by the first)

WeightWatcher is never a dependency of the lab: it lives in its own virtual environment
(``python3 -m venv /tmp/wwvenv && /tmp/wwvenv/bin/pip install torch==2.13.0 weightwatcher``), which
runs this same file with ``--tool weightwatcher`` on the matrices saved by the lab half.

Matrices: every 2-D weight of the packaged all-MiniLM-L6-v2 with both sides ≥ 10 (WeightWatcher's
min_evals), then a LoRA-tuned MiniLM: for each layer's query and value, W + s·B·A and ΔW = s·B·A with
rank 8, s = lora_alpha / r = 2, A ~ N(0, 1/384) and B ~ N(0, 0.02²) (seeded; random factors at the
scale of a trained adapter, not a trained adapter). The lab fits with ``small_sample=True`` so that
ΔW's 8 eigenvalues get WeightWatcher 0.7.7's small-sample rule; the row ``plain`` gives the plain
Clauset fit of the same ΔW for contrast. The shuffled control is random on both sides (WeightWatcher
shuffles with numpy's global generator), so ``rand_distance`` and ``max_rand_eval`` agree only in
distribution.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WW_PYTHON = Path("/tmp/wwvenv/bin/python")
MIN_SIDE = 10
SAME = ("alpha", "xmin", "D", "num_pl_spikes", "lambda_max", "log_norm", "log_spectral_norm", "alpha_weighted",
        "log_alpha_norm", "stable_rank", "num_evals")


def matrices() -> dict[str, np.ndarray]:
    sys.path.insert(0, str(HERE.parent))
    from safetensors.numpy import load_file

    from lab.finetune.models import minilm_path

    weights = {k.removesuffix(".weight"): v.astype(np.float32) for k, v in load_file(str(minilm_path() / "model.safetensors")).items()
               if v.ndim == 2 and min(v.shape) >= MIN_SIDE and np.issubdtype(v.dtype, np.floating)}
    rng = np.random.default_rng(25)
    out = dict(weights)
    for layer in range(6):
        for role in ("query", "value"):
            name = f"encoder.layer.{layer}.attention.self.{role}"
            w = weights[name].astype(np.float64)
            b, a = 0.02 * rng.standard_normal((w.shape[0], 8)), rng.standard_normal((8, w.shape[1])) / np.sqrt(w.shape[1])
            delta = 2.0 * (b @ a)
            out[f"lora_tuned.{name}"] = (w + delta).astype(np.float32)
            out[f"lora_delta.{name}"] = delta.astype(np.float32)
    return out


def weightwatcher_half(path: Path) -> list[dict]:
    import logging

    import torch
    import weightwatcher as ww

    logging.getLogger("weightwatcher").setLevel(logging.ERROR)
    loaded = np.load(path)
    state = {f"{name}.weight": torch.from_numpy(loaded[name]) for name in loaded.files}
    details = ww.WeightWatcher(model=state).analyze(max_evals=0, max_N=10**6, randomize=True)
    rows = json.loads(details.to_json(orient="records"))
    for r in rows:
        r["version"] = ww.__version__
    return rows


def lab_half(mats: dict[str, np.ndarray]) -> dict[str, dict]:
    sys.path.insert(0, str(HERE.parent))
    from lab.probes.esd import esd_metrics, esd_row

    out = {}
    for name, w in mats.items():
        out[name] = esd_row(esd_metrics(w.astype(np.float64), seed=0, small_sample=True), "weight")
        if name.startswith("lora_delta."):
            out[name]["plain_alpha"] = esd_metrics(w.astype(np.float64), randomize=False).fit.alpha
    return out


def compare(lab: dict[str, dict], ww_rows: list[dict]) -> dict:
    ww_by = {r["name"]: r for r in ww_rows}
    rows, missing = [], sorted(set(lab) - set(ww_by))
    for name, mine in lab.items():
        theirs = ww_by.get(name)
        if theirs is None:
            continue
        row = {"name": name, "N": theirs["N"], "M": theirs["M"]}
        for col in SAME:
            row[f"lab_{col}"], row[f"ww_{col}"] = mine[col], theirs[col]
        row["lab_mp_softrank"], row["ww_ww_softrank"] = mine["mp_softrank"], theirs.get("ww_softrank")
        row["lab_rand_distance"], row["ww_rand_distance"] = mine["rand_distance"], theirs.get("rand_distance")
        row["lab_max_rand_eval"], row["ww_max_rand_eval"] = mine["max_rand_eval"], theirs.get("max_rand_eval")
        if "plain_alpha" in mine:
            row["lab_plain_alpha"] = mine["plain_alpha"]
        rows.append(row)

    def rel(a, b):
        return abs(a - b) / abs(b) if b else abs(a - b)

    groups = {}
    for label, pick in (("minilm", lambda n: not n.startswith("lora_")), ("lora_tuned", lambda n: n.startswith("lora_tuned.")),
                        ("lora_delta", lambda n: n.startswith("lora_delta."))):
        chosen = [r for r in rows if pick(r["name"])]
        fitted = [r for r in chosen if np.isfinite(r["lab_alpha"]) and r["ww_alpha"] not in (None, -1)]
        groups[label] = {
            "matrices": len(chosen),
            "both_fit": len(fitted),
            "alpha_max_rel_diff": max((rel(r["lab_alpha"], r["ww_alpha"]) for r in fitted), default=None),
            "alpha_within_1pct": sum(rel(r["lab_alpha"], r["ww_alpha"]) <= 0.01 for r in fitted),
            "xmin_equal_rel_1e-6": sum(rel(r["lab_xmin"], r["ww_xmin"]) <= 1e-6 for r in fitted),
            "num_pl_spikes_equal": sum(r["lab_num_pl_spikes"] == r["ww_num_pl_spikes"] for r in fitted),
            "max_rel_diff": {col: max((rel(r[f"lab_{col}"], r[f"ww_{col}"]) for r in fitted), default=None)
                             for col in ("D", "lambda_max", "log_norm", "alpha_weighted", "log_alpha_norm", "stable_rank")},
            "mp_softrank_over_ww_softrank_median": float(np.median([r["lab_mp_softrank"] / r["ww_ww_softrank"] for r in chosen
                                                                     if r["ww_ww_softrank"]])) if chosen else None,
            "rand_distance_lab_median": float(np.median([r["lab_rand_distance"] for r in chosen])) if chosen else None,
            "rand_distance_ww_median": float(np.median([r["ww_rand_distance"] for r in chosen])) if chosen else None,
        }
    return {"version": ww_rows[0]["version"] if ww_rows else None, "missing_in_ww": missing, "groups": groups, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", choices=["both", "weightwatcher"], default="both")
    ap.add_argument("--matrices", type=Path)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "esd_weightwatcher.json")
    args = ap.parse_args()
    if args.tool == "weightwatcher":
        args.out.write_text(json.dumps(weightwatcher_half(args.matrices)))
        return
    if not WW_PYTHON.exists():
        sys.exit(f"{WW_PYTHON} not found: make the venv as the docstring says")
    mats = matrices()
    with tempfile.TemporaryDirectory() as tmp:
        npz, ww_out = Path(tmp) / "m.npz", Path(tmp) / "ww.json"
        np.savez(npz, **mats)
        subprocess.run([str(WW_PYTHON), __file__, "--tool", "weightwatcher", "--matrices", str(npz), "--out", str(ww_out)],
                       check=True, timeout=3600)
        ww_rows = json.loads(ww_out.read_text())
    result = compare(lab_half(mats), ww_rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({"version": result["version"], "missing_in_ww": result["missing_in_ww"], "groups": result["groups"]}, indent=1))


if __name__ == "__main__":
    main()
