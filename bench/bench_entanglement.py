"""Entanglement profile benchmark: lab vs quimb, and lab vs the single central-cut floor.

    python bench/bench_entanglement.py            # 4096×4096, r = 16; writes bench/results/entanglement.json

Measured side by side in one process, interleaved (see bench/timing.py):

* dense: a seeded 4096×4096 float32 Gaussian matrix, entropies at all 23 cuts of its 24-qubit
  chain, by lab (:func:`lab.probes.entanglement.entanglement_profile`) and by quimb
  (``MatrixProductState.from_dense(ψ, dims, cutoff=0)`` then ``entropy(k)`` at every cut, told
  where the orthogonality centre is and walked from the right so each cut moves it one site: the
  cheapest way to use quimb here). The floor is what one cut alone costs with lab's own kernels
  (:mod:`lab.probes.linalg`): the float64 central-cut Gram matrix (4096×4096) and its eigenvalues,
  from the float32 input.
* LoRA: B (4096×16), A (16×4096), scale 2, profile from the factors by lab vs quimb's dense path
  on s·B·A.

Targets (issue 3): dense lab ≤ quimb/10 and ≤ 1.5 × floor; LoRA lab ≥ 200× faster than quimb.
Agreement is checked too: the largest |S_lab − S_quimb| over cuts, nats.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import quimb.tensor as qtn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import describe  # noqa: E402
from timing import interleaved  # noqa: E402

from lab.probes.entanglement import entanglement_profile  # noqa: E402
from lab.probes.factored import Factors  # noqa: E402
from lab.probes.linalg import gram, psd_eigvals  # noqa: E402
from lab.probes.tensorize import sites  # noqa: E402


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5, help="rounds for lab and the floor")
    ap.add_argument("--quimb-repeats", type=int, default=1, help="rounds for quimb (each takes minutes at 4096)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "entanglement.json")
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

    def quimb_dense():
        runs["quimb_dense"] = quimb_entropies(dense, dims)

    def quimb_lora():
        runs["quimb_lora"] = quimb_entropies(lora_dense, dims)

    result["dense"] = interleaved({
        "lab_all_cuts": lambda: entanglement_profile(dense),
        "floor_central_cut": lambda: central_cut_floor(dense),
    }, args.repeats)
    result["dense"].update(interleaved({"quimb_all_cuts": quimb_dense}, args.quimb_repeats))
    result["lora"] = interleaved({"lab_factored": lambda: entanglement_profile(lora)}, max(args.repeats, 20))
    result["lora"].update(interleaved({"quimb_dense_path": quimb_lora}, args.quimb_repeats))
    result["max_abs_diff_nats"] = {
        "dense": float(np.max(np.abs(lab_dense - runs["quimb_dense"]))),
        "lora": float(np.max(np.abs(lab_lora - runs["quimb_lora"]))),
    }
    d, lo = result["dense"], result["lora"]
    result["ratios"] = {  # from the least disturbed (minimum) times; medians alongside
        "dense_lab_over_quimb": d["lab_all_cuts"]["min_s"] / d["quimb_all_cuts"]["min_s"],
        "dense_lab_over_floor": d["lab_all_cuts"]["min_s"] / d["floor_central_cut"]["min_s"],
        "dense_lab_over_floor_median": d["lab_all_cuts"]["median_s"] / d["floor_central_cut"]["median_s"],
        "lora_quimb_over_lab": lo["quimb_dense_path"]["min_s"] / lo["lab_factored"]["min_s"],
    }
    result["machine_after"] = {"load_average": describe()["load_average"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({"ratios": result["ratios"], "max_abs_diff_nats": result["max_abs_diff_nats"]}, indent=2))


if __name__ == "__main__":
    main()
