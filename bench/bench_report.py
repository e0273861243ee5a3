"""``lab report`` on a results folder (default: the demo's): seconds for HTML + PDF and for ``--format md``,
the PDF's pages and the figures drawn, beside the same commands with the ``lab`` package of an earlier
commit (``--baseline-rev``), interleaved so that both see the same load.

    python bench/bench_report.py                                   # the demo's results in the user cache dir
    python bench/bench_report.py --results /tmp/demo/results --baseline-rev 6ad88d9 --repeats 2

Targets (issue 23 item 3): HTML + PDF <= 8 s and md <= 3 s wall on the demo's 7 runs, on a quiet 2-core machine.
Each command runs as its own process, as a user runs it: wall seconds and the CPU seconds of the process and
its children (the report's forked workers) are recorded, with the load average before and after each run.
The results are copied into a temporary folder first (the report cache writes into RESULTS/.lab-cache/report):
every "cold" run starts with that cache emptied, and for the working tree "cached" runs follow (html+pdf, then md
taking the html+pdf entry), timing a second report of the same results. Writes bench/results/report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_memory import lab_source  # noqa: E402
from machine import describe  # noqa: E402

FORMATS = {"html+pdf": "html,pdf", "md": "md"}


def one(source: dict, results: Path, formats: str, out: Path) -> dict:
    """One ``lab report`` process: wall and CPU seconds, load, the PDF's pages and the PNGs beside the md."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()
    t0 = time.perf_counter()
    done = subprocess.run(source["cmd"] + ["report", str(results), "--format", formats, "--out", str(out)],
                          env=source["env"], cwd=source["cwd"], capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"lab report failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    row = {"wall_s": round(wall, 2), "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2),
           "load_before": load, "load_after": os.getloadavg()}
    if (out / "report.pdf").is_file():
        from pypdf import PdfReader

        row["pdf_pages"] = len(PdfReader(out / "report.pdf").pages)
        row["pdf_bytes"] = (out / "report.pdf").stat().st_size
    if (out / "report.html").is_file():
        row["html_bytes"] = (out / "report.html").stat().st_size
        row["html_figures"] = (out / "report.html").read_text(encoding="utf-8").count("data:image/png;base64,")
    if (out / "figures").is_dir():
        row["md_figures"] = len(list((out / "figures").iterdir()))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=None, help="results folder (default: the demo's, user cache dir)")
    ap.add_argument("--baseline-rev", default=None, help="also time the lab package of this commit (git archive)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "report.json")
    args = ap.parse_args()
    results = args.results
    if results is None:
        import platformdirs

        results = Path(platformdirs.user_cache_dir("lab")) / "demo" / "results"
    runs = sorted(p.parent.name for p in results.glob("*/manifest.json"))
    sources = {"working tree": lab_source(None)}
    if args.baseline_rev:
        sources[f"rev {args.baseline_rev}"] = lab_source(args.baseline_rev)
    timings: dict = {name: {fmt: [] for fmt in FORMATS} for name in sources}
    timings["working tree"].update({f"{fmt} cached": [] for fmt in FORMATS})
    with tempfile.TemporaryDirectory(prefix="lab-bench-report-") as tmp:
        copy = Path(tmp) / "results"
        shutil.copytree(results, copy, ignore=shutil.ignore_patterns(".lab-cache"))
        cache = copy / ".lab-cache" / "report"

        def timed(name: str, fmt: str, formats: str, cold: bool) -> None:
            if cold:
                shutil.rmtree(cache, ignore_errors=True)
            out = Path(tmp) / f"{len(timings[name][fmt])}-{fmt.replace(' ', '-')}-{abs(hash(name))}"
            row = one(sources[name], copy, formats, out)
            timings[name][fmt].append(row)
            print(f"{name:>24} {fmt:>16}: {row['wall_s']:7.2f} s wall, {row['cpu_s']:7.2f} s CPU, "
                  f"load {row['load_before'][0]:.2f}", {k: v for k, v in row.items() if k.endswith(("pages", "figures"))},
                  flush=True)

        for r in range(args.repeats):
            # interleaved: every source under the same load; the working tree last, its html+pdf leaving the
            # entry the cached runs read (a cold run empties the cache first)
            for name in reversed(sources):
                for fmt in ("md", "html+pdf"):
                    timed(name, fmt, FORMATS[fmt], cold=True)
            for fmt, formats in FORMATS.items():
                timed("working tree", f"{fmt} cached", formats, cold=False)
    summary = {name: {fmt: {"min_wall_s": min(r["wall_s"] for r in rows), "min_cpu_s": min(r["cpu_s"] for r in rows)}
                      for fmt, rows in per.items()} for name, per in timings.items()}
    record = {"benchmark": "lab report on a results folder", "results": str(results), "runs": runs,
              "machine": describe(), "sources": {name: s["describe"] for name, s in sources.items()},
              "summary": summary, "timings": timings,
              "targets_s": {"html+pdf": 8.0, "md": 3.0},
              "note": "cold: the report cache emptied before the run; cached: a second report of the same results"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
