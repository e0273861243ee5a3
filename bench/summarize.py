"""Markdown tables of the measured benchmarks (bench/results/*.json), for bench/RESULTS.md.

    python bench/summarize.py            # print every table
    python bench/summarize.py --write    # regenerate the marked blocks of bench/RESULTS.md in place

RESULTS.md is prose written by hand around generated blocks, each between
``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``; ``--write`` replaces only what lies
between the markers (BLOCKS below says which JSON each is made from), so the explanations stay.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
MARKDOWN = HERE / "RESULTS.md"


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _s(t: dict) -> str:
    if len(t.get("runs_s", [])) == 1:
        return f"{t['min_s']:.3f}"
    return f"{t['min_s']:.3f} / {t['median_s']:.3f}"


def _load_avg(r: dict) -> str:
    before = ", ".join(f"{x:.2f}" for x in r["machine_before"]["load_average"])
    after = r.get("machine_after", {}).get("load_average")
    return f"load average before: {before}" + (f"; after: {', '.join(f'{x:.2f}' for x in after)}" if after else "")


def _ran_on(r: dict) -> str:
    m = r["machine_before"]
    when = f" on {r['date']}" if r.get("date") else ""
    return (f"Measured{when}: {m['cpu']}, {m['cores']} cores ({m['affinity']} usable), {m['memory_gib']} GiB; "
            f"torch {m.get('torch')}; OPENBLAS_NUM_THREADS={m['OPENBLAS_NUM_THREADS']}; {_load_avg(r)}.")


def entanglement(name: str) -> str:
    r = _load(name)
    if r is None:
        return f"Not measured yet (`bench/results/{name}` is missing)."
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
        f"| dense: lab / quimb | **{q['dense_lab_over_quimb']:.3f}** | ≤ 0.1 |",
        f"| dense: lab / floor (min / min) | **{q['dense_lab_over_floor']:.2f}** | ≤ 1.5 |",
        f"| dense: lab / floor (median / median) | {q['dense_lab_over_floor_median']:.2f} | ≤ 1.5 |",
        f"| LoRA: quimb / lab | **{q['lora_quimb_over_lab']:.0f}×** | ≥ 200× |",
        "",
        f"Agreement with quimb, max |S_lab − S_quimb| over cuts: dense {r['max_abs_diff_nats']['dense']:.1e} nats, "
        f"LoRA {r['max_abs_diff_nats']['lora']:.1e} nats. {_ran_on(r)}",
    ]
    return "\n".join(rows)


def entanglement_analyze(name: str) -> str:
    """The dense 4096² case through `lab analyze` (issue 23 §1): wall and CPU against both floors and quimb."""
    r = _load(name)
    if r is None or "lab_analyze" not in r.get("dense", {}):
        return f"Not measured yet (`bench/results/{name}` has no `lab analyze` case)."
    d, q = r["dense"], r["ratios"]
    labels = {
        "lab_analyze": "`lab analyze ft --base base --probes entanglement` (whole process)",
        "lab_analyze_default_probes": "`lab analyze` with deltas, entanglement, spectra (whole process)",
        "lab_all_cuts": "`entanglement_profile` in this process, all cuts",
        "floor_central_cut": "floor, lab's kernels: central-cut Gram + MKL eigenvalues",
        "floor_numpy": "floor, numpy: central-cut Gram + `numpy.linalg.eigvalsh`",
        "quimb_all_cuts": "quimb from_dense + entropy(k), all cuts",
    }
    rows = ["| measurement | wall s (min / median) | CPU s (min) | runs |", "|---|---|---|---|"]
    for key, label in labels.items():
        if key in d:
            rows.append(f"| {label} | {_s(d[key])} | {d[key].get('cpu_min_s', float('nan')):.2f} | {len(d[key]['runs_s'])} |")
    rows += ["", "| ratio (min / min) | wall | CPU | target |", "|---|---|---|---|"]
    for name_, floor, target in (("lab_analyze", "floor_central_cut", "≤ 1.3"), ("lab_analyze", "floor_numpy", "≤ 1.3"),
                                 ("lab_analyze_default_probes", "floor_central_cut", ""),
                                 ("lab_analyze_default_probes", "floor_numpy", "")):
        key = f"{name_}_over_{floor}"
        if key in q:
            short = "`lab analyze`, entanglement" if name_ == "lab_analyze" else "`lab analyze`, default probes"
            rows.append(f"| {short} / floor ({'numpy' if floor == 'floor_numpy' else 'lab kernels'}) "
                        f"| **{q[key]:.2f}** | {q[key + '_cpu']:.2f} | {target} |")
    if "lab_analyze_over_quimb" in q:
        rows.append(f"| `lab analyze` (entanglement) / quimb | **{q['lab_analyze_over_quimb']:.3f}** | "
                    f"{q['lab_analyze_over_quimb_cpu']:.3f} | ≤ 0.08 |")
    rows.append(f"| `entanglement_profile` / floor (lab's kernels) | {q['dense_lab_over_floor']:.2f} | "
                f"{q['dense_lab_over_floor_cpu']:.2f} | |")
    env = r.get("analyze", {}).get("env", {})
    rows += ["", f"`lab analyze`'s entropies equal the in-process profile of the stored ΔW to "
                 f"{r['analyze']['max_abs_diff_vs_profile_of_stored_delta_nats']:.1e} nats. Threads: "
                 + ", ".join(f"{k}={v}" for k, v in env.items()) + f". {_ran_on(r)}"]
    return "\n".join(rows)


def weightwatcher_pair(name: str) -> str:
    """`lab analyze` of the 1B-shaped pair beside WeightWatcher's analyze() of its fine-tuned model (issue 23 §4)."""
    r = _load(name)
    if r is None or "weightwatcher" not in r:
        return f"Not measured yet (`bench/results/{name}` has no WeightWatcher run)."
    lab, ww = r.get("run", {}), r["weightwatcher"]
    if "error" in ww:
        return f"WeightWatcher not measured: {ww['error']}"
    rows = ["| tool | what | wall s | CPU s | peak RSS GB (anonymous) |", "|---|---|---|---|---|"]
    if lab:
        rows.append(f"| lab | `{' '.join(['lab analyze ft --base base --controls --probes ' + PROBES_MEMORY] + r.get('lab_args', []))}`: "
                    f"{len(r.get('manifest', {}).get('units', []))} units | {lab['wall_s']:.0f} | {lab['cpu_s']:.0f} | "
                    f"{lab['peak_rss_gb']:.2f} ({lab['peak_anon_rss_gb']:.2f}) |")
    rows.append(f"| WeightWatcher {ww.get('version')} | `analyze()` defaults on the fine-tuned state dict: "
                f"{ww.get('matrices_analysed')} matrices (load {ww.get('load_s', float('nan')):.0f} s, analyze "
                f"{ww.get('analyze_s', float('nan')):.0f} s) | {ww['wall_s']:.0f} | {ww['cpu_s']:.0f} | "
                f"{ww['peak_rss_gb']:.2f} ({ww['peak_anon_rss_gb']:.2f}) |")
    if "lab_vs_weightwatcher" in r:
        v = r["lab_vs_weightwatcher"]
        rows += ["", f"lab / WeightWatcher: wall **{v['wall']:.2f}** (target ≤ 1.5), CPU {v['cpu']:.2f}, "
                     f"peak RSS **{v['peak_rss']:.3f}** (target ≤ 0.2)."]
    rows += ["", _ran_on(r)]
    return "\n".join(rows)


PROBES_MEMORY = "deltas,entanglement,spectra"


def spectra(name: str) -> str:
    r = _load(name)
    if r is None:
        return f"Not measured yet (`bench/results/{name}` is missing)."
    lab, ww = r["lab"], r["weightwatcher"]
    if "error" in ww:
        return f"lab: {lab['matrices']} matrices in {_s(lab)} s. WeightWatcher not measured: {ww['error']}"
    q = r["ratios"]
    return "\n".join([
        "| tool | matrices | seconds for all (min / median) | runs |",
        "|---|---|---|---|",
        f"| lab spectra probe | {lab['matrices']} | {_s(lab)} | {len(lab['runs_s'])} |",
        f"| WeightWatcher {ww['version']} analyze() | {ww['matrices']} | {_s(ww)} | {len(ww['runs_s'])} |",
        "",
        f"lab / WeightWatcher: **{q['lab_over_weightwatcher']:.2f}** (min / min), "
        f"{q['lab_over_weightwatcher_median']:.2f} (median / median); target ≤ 0.5. {_load_avg(r)}.",
    ])


def spectra_both() -> str:
    """One table for both thread settings (spectra.json and spectra_1thread.json)."""
    rows = ["| setting | lab, matrices (min / median s) | WeightWatcher (min / median s) | lab / WeightWatcher | target |",
            "|---|---|---|---|---|"]
    notes = []
    for label, name in (("default threads", "spectra.json"), ("one thread", "spectra_1thread.json")):
        r = _load(name)
        if r is None:
            rows.append(f"| {label} | not measured | | | |")
            continue
        lab, ww = r["lab"], r["weightwatcher"]
        if "error" in ww:
            rows.append(f"| {label} | {lab['matrices']}: {_s(lab)} | not measured | | ≤ 0.5 |")
            notes.append(f"{label}: {ww['error']}")
            continue
        threads = r["machine_before"].get("OPENBLAS_NUM_THREADS") or r["machine_before"]["cores"]
        rows.append(f"| {label} ({threads}) | {lab['matrices']}: {_s(lab)} | {_s(ww)} | "
                    f"**{r['ratios']['lab_over_weightwatcher']:.2f}** | ≤ 0.5 |")
        notes.append(f"{label}: {len(lab['runs_s'])} runs each after one warm-up, WeightWatcher {ww['version']}, "
                     f"{_load_avg(r)}")
    for label, name in (("default threads", "spectra_lab.json"), ("one thread", "spectra_lab_1thread.json")):
        lab_only = _load(name)
        if lab_only is not None:
            load = ", ".join(f"{x:.2f}" for x in lab_only["machine"]["load_average"])
            notes.append(f"latest lab-only run, {label} (`{name}`; WeightWatcher skipped: no /tmp/wwvenv): "
                         f"{lab_only['matrices']} matrices in {_s(lab_only)} s, load average {load}")
    return "\n".join(rows + [""] + [f"* {n}." for n in notes])


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


# --- issue 8: the engine ---------------------------------------------------------------------------

def _memory_row(name: str, r: dict) -> str:
    lab = r.get("lab", {})
    what = lab.get("source", "working tree")
    if "commit" in lab:
        what = f"commit `{lab['commit'][:7]}`"
    elif lab.get("head"):
        dirty = len(lab.get("uncommitted_lab_files", []))
        what = f"working tree at `{lab['head'][:7]}`" + (f" + {dirty} uncommitted lab/ files" if dirty else "")
    args = " ".join(r.get("lab_args", [])) or "(none)"
    run = r.get("run")
    if run is None:
        return f"| {what} | {args} | not run (floor only) | | | | | {r['floor']['floor_s']:.0f} | | | `{name}` |"
    status = "complete" if run["returncode"] == 0 and not run["stopped"] else (run["stopped"] or f"exit code {run['returncode']}")
    again = r["floor"].get("measured_separately")
    floor = f"{r['floor']['floor_s']:.0f}" + (f" (measured {again['date'][:16]}, load {again['load_average'][0]:.1f})"
                                               if again else "")
    cpu = f"{run['cpu_s']:.0f}" if run.get("cpu_s") is not None else "–"
    cpu_ratio = f"{run['cpu_over_floor']:.2f}" if run.get("cpu_over_floor") is not None else "–"
    more = "" if status == "complete" else "> "  # a stopped run would have taken longer
    if run.get("cpu_over_floor") is not None:
        cpu_ratio = more + cpu_ratio
    maxrss = f"{run['ru_maxrss_children_gb']:.2f}" + (" (†)" if run.get("ru_maxrss_note") else "")
    return (f"| {what} | `{args}` | {status} | **{more}{run['peak_rss_gb']:.2f}** ({run['peak_anon_rss_gb']:.2f}) | "
            f"{maxrss} | {more}{run['wall_s']:.0f} | {cpu} | {floor} | "
            f"{more}{run['wall_over_floor']:.2f} | {cpu_ratio} | `{name}` |")


def memory() -> str:
    files = sorted(RESULTS.glob("memory*.json"))
    if not files:
        return "Not measured yet: run `python bench/bench_memory.py`."
    out = ["| lab | extra arguments | outcome | peak RSS, GB (anonymous) | ru_maxrss, GB | wall, s | CPU, s | floor, s "
           "| wall / floor | CPU / floor | JSON |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    results = {f.name: json.loads(f.read_text()) for f in files}
    out += [_memory_row(n, r) for n, r in results.items()]
    notes = [f"(†) `{n}`: {r['run']['ru_maxrss_note']}." for n, r in results.items() if r.get("run", {}).get("ru_maxrss_note")]
    out += [""] + notes if notes else []
    out += ["", "A stopped run's numbers are lower bounds (>): it would have run longer and may have grown further."]
    main = results.get("memory.json") or next(iter(results.values()))
    f = main["floor"]
    resident = f["page_cache_resident_before"]["mean_fraction"]
    out += ["", f"Floor (`{'memory.json' if 'memory.json' in results else next(iter(results))}`): "
            f"{f['file_bytes'] / 1e9:.2f} GB of safetensors read in {f['read_s']:.2f} s = "
            f"**{f['read_bandwidth_gb_s']:.2f} GB/s** (page cache; "
            f"{'unknown' if resident is None else f'{resident:.0%}'} of the files were cached before the warm-up pass), "
            f"so the {f['bytes_2d_both'] / 1e9:.2f} GB of 2-D tensors take **{f['read_floor_s']:.1f} s**; "
            f"one central-cut Gram + eigenvalues per module ({f.get('eigensolve_clock', 'wall seconds')}, "
            f"{f.get('eigensolve_threads', '?')} thread(s)):", "",
            "| shape | central cut | seconds each (wall) | modules + controls | seconds |", "|---|---|---|---|---|"]
    for p in f["eigensolve"]:
        wall = f" ({p['wall_each']:.3f})" if "wall_each" in p else ""
        out.append(f"| {p['shape'][0]}×{p['shape'][1]} | {p['central_cut'][0]}×{p['central_cut'][1]} | "
                   f"{p['seconds_each']:.3f}{wall} | {p['modules']} + {p['controls']} | {p['seconds']:.1f} |")
    out.append(f"| **floor** | | | read {f['read_floor_s']:.1f} + eigensolves {f['eigensolve_serial_s']:.1f} × "
               f"{f['eigensolve_threads']} thread(s) / {f['cores']} cores | **{f['floor_s']:.1f}** |")
    costs = main.get("per_module")
    if costs:
        out += ["", f"Per-module cost ({costs['source']}; {costs['cores_per_unit']:g} of {costs['cores']} cores "
                    f"per unit):", "",
                "| role | shape | modules | seconds each | of which read | × its floor eigensolve |",
                "|---|---|---|---|---|---|"]
        for role, c in costs["roles"].items():
            est = " (estimated)" if c.get("estimated") else ""
            ratio = f"{c['over_eigensolve']:.1f}" if "over_eigensolve" in c else "–"
            out.append(f"| {role} | {c['shape'][0]}×{c['shape'][1]} | {c['modules']} | {c['mean_s']:.3f}{est} | "
                       f"{c['read_s']:.3f} | {ratio} |")
    ext = main.get("extrapolation")
    if ext:
        keys = list(next(iter(ext.values()))["time"])
        out += ["", "Extrapolation (assumptions above; floor = the same arithmetic with the eigensolve floor):", "",
                "| pair | largest matrix (float64) | read | " + " | ".join(k.replace("_", " ") for k in keys) + " |",
                "|---|---|---|" + "---|" * len(keys)]
        for label, e in ext.items():
            big = e["largest_matrix"]
            cells = [f"{t['hours']:.2f} h (floor {t['floor_seconds'] / 3600:.2f} h)" for t in e["time"].values()]
            out.append(f"| {label} | {big['shape'][0]}×{big['shape'][1]} ({big['float64_gb']:.1f} GB) | "
                       f"{e['read_bytes'] / 1e9:.0f} GB | " + " | ".join(cells) + " |")
        out += ["", "<details><summary>the arithmetic</summary>", "", "```"]
        for label, e in ext.items():
            out.append(f"{label}:")
            out += [f"  {line}" for line in e["modules"]]
            out += [f"  {k.replace('_', ' ')}: {t['arithmetic']}" for k, t in e["time"].items()]
        out += ["```", "", "</details>"]
    out += ["", _ran_on(main)]
    return "\n".join(out)


def sweep() -> str:
    r = _load("sweep.json")
    if r is None:
        return "Not measured yet: run `python bench/bench_sweep.py`."
    fx = r.get("fixture", {})
    if "error" in r:
        return f"Not measured: {r['error']} (fixture ready: {fx.get('modules_per_checkpoint')} modules × 8 checkpoints). {_ran_on(r)}"
    t = r["timing"]
    rows = ["| `--workers` | seconds (min / median) | runs | warm-up run, s |", "|---|---|---|---|"]
    for w in (1, 2):
        x = t[f"workers_{w}"]
        warm = "–" if x.get("warmup_s") is None else f"{x['warmup_s']:.1f}"
        rows.append(f"| {w} | {_s(x)} | {len(x['runs_s'])} | {warm} |")
    verdicts = ", ".join(f"{n} ({v.get('rows', '?')} rows: {'exact' if v.get('exact') else 'equal' if v['equal'] else 'DIFFERENT'}"
                         f"{', after sorting' if v.get('sorted') and v['equal'] else ''})" for n, v in r["tables"].items())
    if r.get("runs"):
        rows += ["", "Every run (in order): " + "; ".join(
            f"{x['workers']} worker(s) {x['wall_s']:.0f} s wall, {x['cpu_s']:.0f} s CPU, load {x['load_1min']:.1f}"
            for x in r["runs"]) + "."]
    rows += ["", f"Speed-up of 2 workers over 1: **{r['speedup']:.2f}×** (min / min), {r['speedup_median']:.2f}× "
                 f"(median / median); target ≥ {r['target']}×. Tables of the two runs: {verdicts}.", "", _ran_on(r)]
    return "\n".join(rows)


BLOCKS = {
    "entanglement": lambda: entanglement("entanglement.json"),
    "entanglement_1thread": lambda: entanglement("entanglement_1thread.json"),
    "spectra": spectra_both,
    "memory": memory,
    "sweep": sweep,
    "entanglement_analyze_1thread": lambda: entanglement_analyze("entanglement_analyze_1thread.json"),
    "weightwatcher_pair": lambda: weightwatcher_pair("weightwatcher_pair.json"),
}


def write(markdown: Path = MARKDOWN) -> list[str]:
    """Regenerate every marked block of ``markdown``; return the names of the blocks found."""
    text = markdown.read_text()
    found = []

    def fill(match: re.Match) -> str:
        name = match.group(1)
        found.append(name)
        return f"<!-- results:{name} -->\n{BLOCKS[name]()}\n<!-- /results:{name} -->"

    pattern = re.compile(r"<!-- results:(\w+) -->.*?<!-- /results:\1 -->", re.S)
    markdown.write_text(pattern.sub(fill, text))
    return found


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help=f"regenerate the marked blocks of {MARKDOWN}")
    args = ap.parse_args()
    if args.write:
        print(f"{MARKDOWN}: regenerated {', '.join(write())}")
    else:
        for name, block in BLOCKS.items():
            print(f"### {name}\n\n{block()}\n")
