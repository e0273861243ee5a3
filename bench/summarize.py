"""Markdown tables of the measured benchmarks (bench/results/*.json), for bench/RESULTS.md.

    python bench/summarize.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def _s(t: dict) -> str:
    return f"{t['min_s']:.3f} / {t['median_s']:.3f}"


def entanglement(name: str) -> str:
    r = json.loads((RESULTS / name).read_text())
    d, lo, q = r["dense"], r["lora"], r["ratios"]
    rows = [
        "| measurement | seconds (min / median) | runs |",
        "|---|---|---|",
        f"| dense {r['size']}² float32, all {r['n_sites'] - 1} cuts, **lab** | {_s(d['lab_all_cuts'])} | {len(d['lab_all_cuts']['runs_s'])} |",
        f"| dense, central cut alone (Gram + eigenvalues): **floor** | {_s(d['floor_central_cut'])} | {len(d['floor_central_cut']['runs_s'])} |",
        f"| dense, all cuts, **quimb** from_dense + entropy(k) | {_s(d['quimb_all_cuts'])} | {len(d['quimb_all_cuts']['runs_s'])} |",
        f"| LoRA r = {r['rank']}, all cuts, **lab** from the factors | {_s(lo['lab_factored'])} | {len(lo['lab_factored']['runs_s'])} |",
        f"| LoRA, all cuts, **quimb** on s·B·A | {_s(lo['quimb_dense_path'])} | {len(lo['quimb_dense_path']['runs_s'])} |",
        "",
        "| ratio | measured | target |",
        "|---|---|---|",
        f"| dense: lab / quimb | {q['dense_lab_over_quimb']:.3f} | ≤ 0.1 |",
        f"| dense: lab / floor (min / min) | {q['dense_lab_over_floor']:.2f} | ≤ 1.5 |",
        f"| dense: lab / floor (median / median) | {q['dense_lab_over_floor_median']:.2f} | ≤ 1.5 |",
        f"| LoRA: quimb / lab | {q['lora_quimb_over_lab']:.0f}× | ≥ 200× |",
        "",
        f"Agreement with quimb, max |S_lab − S_quimb| over cuts: dense {r['max_abs_diff_nats']['dense']:.1e} nats, "
        f"LoRA {r['max_abs_diff_nats']['lora']:.1e} nats. Load average before: "
        f"{', '.join(f'{x:.2f}' for x in r['machine_before']['load_average'])}; after: "
        f"{', '.join(f'{x:.2f}' for x in r['machine_after']['load_average'])}.",
    ]
    return "\n".join(rows)


def spectra(name: str) -> str:
    r = json.loads((RESULTS / name).read_text())
    lab, ww = r["lab"], r["weightwatcher"]
    if "error" in ww:
        return f"WeightWatcher not measured: {ww['error']}"
    q = r["ratios"]
    return "\n".join([
        "| tool | matrices | seconds for all (min / median) | runs |",
        "|---|---|---|---|",
        f"| lab spectra probe | {lab['matrices']} | {_s(lab)} | {len(lab['runs_s'])} |",
        f"| WeightWatcher {ww['version']} analyze() | {ww['matrices']} | {_s(ww)} | {len(ww['runs_s'])} |",
        "",
        f"lab / WeightWatcher: **{q['lab_over_weightwatcher']:.2f}** (min / min), "
        f"{q['lab_over_weightwatcher_median']:.2f} (median / median); target ≤ 0.5. Load average before: "
        f"{', '.join(f'{x:.2f}' for x in r['machine_before']['load_average'])}.",
    ])


def machine(name: str) -> str:
    m = json.loads((RESULTS / name).read_text())["machine_before"]
    blas = "; ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('library', b.get('prefix'))}, {b.get('num_threads')} threads, "
                     f"{b.get('architecture')})" for b in m["blas"])
    return "\n".join([
        f"- CPU: {m['cpu']}, {m['cores']} cores ({m['affinity']} usable), {m['memory_gib']} GiB memory",
        f"- Python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']}, torch {m.get('torch')}",
        f"- BLAS/LAPACK loaded (threadpoolctl): {blas}",
        f"- OPENBLAS_CORETYPE={m['OPENBLAS_CORETYPE']}, OPENBLAS_NUM_THREADS={m['OPENBLAS_NUM_THREADS']}, "
        f"OMP_NUM_THREADS={m['OMP_NUM_THREADS']}",
    ])


if __name__ == "__main__":
    for f in sorted(RESULTS.glob("*.json")):
        print(f"### {f.name}\n")
        if f.name.startswith("entanglement"):
            print(machine(f.name) + "\n\n" + entanglement(f.name) + "\n")
        elif f.name.startswith("spectra"):
            print(machine(f.name) + "\n\n" + spectra(f.name) + "\n")
