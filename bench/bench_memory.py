"""Memory and time of ``lab analyze`` on a LLaMA-1B-shaped pair, against the floor (issue 8).

    python bench/bench_memory.py                        # the pair from bench/llama1b_pair.py, serial engine
    python bench/bench_memory.py -- --workers 2         # anything after -- goes to `lab analyze`
    python bench/bench_memory.py --no-run               # the floor alone (~2 min)
    python bench/bench_memory.py --lab-rev c60d635      # the lab package of a commit (before/after a rewrite)
    python bench/bench_memory.py --refloor bench/results/memory.json   # the floor again, the run kept
    python bench/bench_memory.py --reread bench/results/memory.json    # the run folder's unit timings again

Writes bench/results/memory.json (memory_<extra args and rev>.json with arguments passed through or
--lab-rev); lab's results and logs go to /tmp/lab-bench/memory-out/.

What is measured (the read floor first, which also warms the page cache for the run; then the
run; then the eigensolves, so that this process is still small when it forks the run):

1. **Read floor.** Whether the page cache holds the checkpoints (``mincore`` on every
   safetensors file, before anything is read), then one warm-up pass and one timed pass reading
   every byte of both checkpoints' safetensors files with plain ``readinto`` in 16 MiB chunks.
   After the warm-up the files sit in the page cache, so the timed pass measures page-cache
   bandwidth (not the disk): the fastest any reader gets the bytes. That bandwidth, applied to
   the bytes the analysis must read (every 2-D tensor of both checkpoints), is the read floor.
2. **Eigensolve floor.** For every distinct 2-D shape (rows, cols): the central cut of its MPS
   chain (``lab.kernels.tensorize.sites``; the cut where min(D_left, D_right) is largest), a
   random float64 matrix reshaped to (D_left, D_right), and the time of ``lab.kernels.linalg.gram``
   + ``psd_eigvals`` on it (minimum of ``--floor-repeats``) with ``--floor-threads`` BLAS threads
   (default 1), times the number of modules of that shape plus one control per shape
   (``--controls`` analyses one random matrix per shape). Any exact entanglement profile needs at
   least this one Gram matrix and its eigenvalues per module. The modules are independent, so
   cores / threads of these solves run at once: eigensolve floor = Σ eigensolves × threads /
   cores, and floor = read floor + eigensolve floor. One thread per solve is the default because
   it is what single-thread Dask workers do, and because multithreaded OpenBLAS stalls on a
   loaded machine (at a load average of 7 on these 2 cores a 2-thread 2048² solve took 35 s
   instead of 0.5 s); ``--floor-threads 2`` gives the serial 2-thread floor instead. A one-thread
   solve is timed by its CPU time (``process_time``), which other jobs on a shared machine distort
   far less than its wall time (both are recorded).
3. **The run.** ``lab analyze FT --base BASE --controls --probes deltas,entanglement,spectra
   --out OUT --run llama1b --overwrite --quiet [extra args]`` as a subprocess, in its own session.
   From outside, every ``--interval`` (50 ms) with psutil: the RSS of the process and all its
   descendants, summed (peak recorded; with Dask workers they are children of the ``lab``
   process), and the same sum less each process's file-backed shared pages (``rss − shared``:
   anonymous memory; the memory-mapped checkpoint pages counted in RSS are page cache the kernel
   may drop). Wall time from start to exit. After it ends, its own ``ru_maxrss`` as a cross-check
   (the largest single process, not a sum), from ``os.wait4`` on the run rather than
   ``getrusage(RUSAGE_CHILDREN)``, which would also count this script's git calls: a forked
   child's ``ru_maxrss`` starts at its parent's RSS, which is also why the run is forked before
   the floor's 2 GB test matrices exist (``launcher_rss_gb`` records this process's RSS then).
   And the run's CPU seconds (user + system of it and the descendants it reaped): CPU / floor compares core-seconds with the floor's core-seconds (read + Σ one-thread
   eigensolves) and is the ratio a loaded machine distorts least; wall / floor is what a user
   waits for. Above ``--max-rss-gb`` (12) or after ``--timeout`` the whole process group is
   killed (SIGTERM first on a timeout, so lab marks its run incomplete) and the JSON says
   so. Workers of an external ``--scheduler`` are not descendants: only the client is measured then.
4. **Per-module costs** from the run's ``manifest.json``: the engine records per-unit timings
   (read defensively: a list or dict under ``units``, names under ``label`` / ``module`` / ``key``,
   seconds under ``seconds`` / ``elapsed_s`` / ``wall_s`` / ...; for a stopped run, the finished
   units' records in ``parts/journal``); without any, each module's cost is estimated as its eigensolve
   floor times the run's (CPU − read floor) / Σ eigensolves.
5. **Extrapolation** to an 8B pair (Llama-3.1-8B: hidden 4096, intermediate 14336, 32 layers, 32/8
   heads of 128, vocabulary 128256, untied lm_head) and a 70B pair (hidden 8192, intermediate
   28672, 80 layers, 64/8 heads), on this machine and on a 16-core one. Assumptions, printed with
   the arithmetic: a module's compute time scales with the flops of its central-cut Gram matrix
   and eigensolve, n²·L + n³ (n × L the smaller × larger side of the central cut; 2n³ for a square
   cut), from the 1B module of the same role; its read time is its bf16 bytes in both checkpoints
   over the measured bandwidth; modules are independent, so cores scale across modules (Dask
   workers, one BLAS thread each): a unit that ran with ``cores/w`` of this machine's cores (``w``
   units at a time) lets ``c`` cores run ``c·w/cores`` units at once; reading does not scale with
   cores (conservative; a 70B pair, 282 GB, does not fit a page cache, so disk bandwidth rules).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import llama1b_pair  # noqa: E402
from machine import describe  # noqa: E402

from lab.checkpoints.naming import module_name  # noqa: E402
from lab.kernels.linalg import gram, psd_eigvals  # noqa: E402
from lab.kernels.tensorize import sites  # noqa: E402

CHUNK = 16 << 20
SRC_CACHE = Path("/tmp/lab-bench/src")
GB = 1e9
PROBES = "deltas,entanglement,spectra"
DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I8": 1, "U8": 1, "I16": 2, "I32": 4, "I64": 8, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1}
SECONDS_KEYS = ("seconds", "elapsed_s", "wall_s", "time_s", "duration_s", "total_s", "elapsed", "duration", "wall",
                "time")
NAME_KEYS = ("module", "modules", "label", "key", "keys", "tensor", "tensors", "name", "id")

# the pairs to extrapolate to: (hidden, intermediate, layers, query heads, key/value heads, head dim, vocab, tied)
MODELS = {
    "8B (Llama-3.1-8B)": dict(hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8, head_dim=128,
                              vocab=128256, tied=False),
    "70B (Llama-3.1-70B)": dict(hidden=8192, intermediate=28672, layers=80, heads=64, kv_heads=8, head_dim=128,
                                vocab=128256, tied=False),
}


# --- the checkpoints -----------------------------------------------------------------------------

def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file (tensor name -> dtype, shape, offsets)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header


def matrices(folder: Path) -> dict[str, dict]:
    """Every 2-D tensor of a checkpoint folder: name -> shape and bytes."""
    out = {}
    for file in sorted(folder.glob("*.safetensors")):
        for name, t in safetensors_header(file).items():
            if len(t["shape"]) == 2:
                out[name] = {"shape": tuple(t["shape"]), "bytes": t["data_offsets"][1] - t["data_offsets"][0],
                             "dtype": t["dtype"]}
    return out


def resident_fraction(path: Path) -> float | None:
    """Fraction of a file's pages in the page cache (``mincore``); None where that cannot be asked."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        size = path.stat().st_size
        page = os.sysconf("SC_PAGE_SIZE")
        pages = (size + page - 1) // page
        if pages == 0:
            return 1.0
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr is None or addr == ctypes.c_void_p(-1).value:
                return None
            try:
                vec = (ctypes.c_ubyte * pages)()
                if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                    return None
                return float((np.frombuffer(vec, dtype=np.uint8) & 1).mean())
            finally:
                libc.munmap(ctypes.c_void_p(addr), size)
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        return None


def read_all(files: list[Path]) -> tuple[int, float]:
    """(bytes, seconds) to read every byte of ``files`` with plain reads in 16 MiB chunks."""
    buf = memoryview(bytearray(CHUNK))
    total = 0
    t0 = time.perf_counter()
    for file in files:
        with open(file, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                total += n
    return total, time.perf_counter() - t0


# --- the floor -----------------------------------------------------------------------------------

def central_cut(rows: int, cols: int) -> tuple[int, int]:
    """(D_left, D_right) at the cut of the rows×cols chain where min(D_left, D_right) is largest."""
    st = sites(rows, cols)
    if st.n_sites < 2:
        return rows, cols
    k = int(np.argmax(np.minimum(st.d_left, st.d_right)))
    return int(st.d_left[k]), int(st.d_right[k])


def gram_flops(rows: int, cols: int) -> float:
    """Flops of the central-cut Gram matrix (n²·L) and its eigensolve (n³), up to constants."""
    dl, dr = central_cut(rows, cols)
    n, big = min(dl, dr), max(dl, dr)
    return float(n) * n * big + float(n) ** 3


def eigensolve_seconds(rows: int, cols: int, repeats: int, threads: int, seed: int = 0) -> tuple[float, float]:
    """Least (wall, CPU) seconds of lab's Gram + eigenvalues on a random float64 matrix at the
    central cut, with ``threads`` BLAS/OpenMP threads (numpy's OpenBLAS and torch's MKL alike)."""
    import torch
    from threadpoolctl import threadpool_limits

    dl, dr = central_cut(rows, cols)
    x = np.random.default_rng(seed).standard_normal((dl, dr))
    wall = cpu = float("inf")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            for _ in range(repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                psd_eigvals(gram(x))
                wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    finally:
        torch.set_num_threads(before)
    return wall, cpu


def measure_read(base: Path, ft: Path) -> dict:
    """The read floor: page-cache residency, then a warm-up pass and a timed pass over every file."""
    files = sorted(base.glob("*.safetensors")) + sorted(ft.glob("*.safetensors"))
    resident_before = {str(f): resident_fraction(f) for f in files}
    known = [v for v in resident_before.values() if v is not None]
    warm_bytes, warm_s = read_all(files)
    file_bytes, read_s = read_all(files)
    bandwidth = file_bytes / read_s
    bytes_2d = sum(t["bytes"] for folder in (base, ft) for t in matrices(folder).values())
    return {
        "files": len(files), "file_bytes": file_bytes,
        "page_cache_resident_before": {"mean_fraction": float(np.mean(known)) if known else None,
                                       "per_file": resident_before},
        "warmup_read_s": warm_s, "read_s": read_s, "read_bandwidth_gb_s": bandwidth / GB,
        "read_note": "timed pass after one warm-up pass: page-cache bandwidth, plain readinto in 16 MiB chunks",
        "bytes_2d_both": bytes_2d, "read_floor_s": bytes_2d / bandwidth,
    }


def measure_floor(read: dict, ft: Path, controls: bool, repeats: int, threads: int, cores: int) -> dict:
    """The read floor plus one central-cut eigensolve per module (and per control)."""
    shapes: dict[tuple[int, int], int] = {}
    for t in matrices(ft).values():
        shapes[t["shape"]] = shapes.get(t["shape"], 0) + 1
    per_shape = []
    for (rows, cols), count in sorted(shapes.items()):
        wall, cpu = eigensolve_seconds(rows, cols, repeats, threads)
        s = cpu if threads == 1 else wall
        dl, dr = central_cut(rows, cols)
        n = count + (1 if controls else 0)
        per_shape.append({"shape": [rows, cols], "central_cut": [dl, dr], "gram_n": min(dl, dr), "modules": count,
                          "controls": n - count, "seconds_each": s, "seconds": s * n, "wall_each": wall,
                          "cpu_each": cpu})
    serial_s = sum(p["seconds"] for p in per_shape)
    eig_s = serial_s * threads / cores  # cores / threads eigensolves at once: modules are independent
    return {
        **read,
        "eigensolve": per_shape, "eigensolve_threads": threads, "cores": cores,
        "eigensolve_clock": "CPU seconds (process_time) of the one-thread solve" if threads == 1 else "wall seconds",
        "eigensolve_serial_s": serial_s, "eigensolve_floor_s": eig_s,
        "floor_s": read["read_floor_s"] + eig_s,
    }


# --- the run -------------------------------------------------------------------------------------

def lab_source(rev: str | None) -> dict:
    """How to run ``lab``: the working tree (the installed console script), or the ``lab/`` package
    of a commit (``git archive`` into /tmp/lab-bench/src/COMMIT, first on PYTHONPATH), for
    before/after comparisons. Returns the command, environment, working folder and a description."""
    repo = HERE.parent

    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *a], capture_output=True, text=True, check=True).stdout.rstrip()

    if rev is None:
        exe = Path(sys.executable).with_name("lab")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "lab.cli"]
        changed = git("status", "--porcelain", "--", "lab").splitlines()
        return {"cmd": cmd, "env": dict(os.environ), "cwd": None,
                "describe": {"source": "working tree", "head": git("rev-parse", "HEAD"), "uncommitted_lab_files": changed}}
    import io
    import tarfile

    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    src = SRC_CACHE / commit[:12]
    if not (src / "lab" / "__init__.py").is_file():
        archive = subprocess.run(["git", "-C", str(repo), "archive", commit, "lab"], capture_output=True, check=True).stdout
        tmp = src.with_name(src.name + ".partial")
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        tmp.rename(src)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))}
    # cwd = the snapshot: `python -m` puts the working folder first on sys.path
    return {"cmd": [sys.executable, "-m", "lab.cli"], "env": env, "cwd": str(src),
            "describe": {"source": f"git archive of {rev}", "commit": commit, "subject": git("log", "-1", "--format=%s", commit)}}


def tree_memory(proc: psutil.Process) -> tuple[int, int, int]:
    """(Σ rss, Σ (rss − shared), number of processes) over a process and its descendants."""
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0, 0
    rss = anon = alive = 0
    for p in procs:
        try:
            m = p.memory_info()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        rss += m.rss
        anon += m.rss - getattr(m, "shared", 0)
        alive += 1
    return rss, anon, alive


def kill_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the run's own process group (it was started in a new session: only what it spawned)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def run_analysis(cmd: list[str], log_dir: Path, interval: float, timeout: float, max_rss: float,
                 env: dict | None = None, cwd: str | None = None) -> dict:
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "stdout.log", "wb") as out, open(log_dir / "stderr.log", "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True, env=env, cwd=cwd)
        watched = psutil.Process(proc.pid)

        def reap(block: bool):
            """The run's own rusage once it has exited (wait4: this child and the descendants it
            reaped, not other children of this process, e.g. git forked while this one was large)."""
            pid, status, usage = os.wait4(proc.pid, 0 if block else os.WNOHANG)
            if pid == 0:
                return None
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage

        peak = {"rss": 0, "anon": 0, "processes": 0, "at_s": 0.0}
        timeline, next_mark, stopped = [], 0.0, None
        while (usage := reap(False)) is None:
            now = time.perf_counter() - t0
            rss, anon, alive = tree_memory(watched)
            if rss > peak["rss"]:
                peak.update(rss=rss, at_s=now, processes=alive)
            peak["anon"] = max(peak["anon"], anon)
            peak["processes"] = max(peak["processes"], alive)
            if now >= next_mark:
                timeline.append([round(now, 1), round(rss / GB, 3), round(anon / GB, 3), os.getloadavg()[0]])
                next_mark = now + 1.0
            if rss > max_rss * GB:
                stopped = f"killed: RSS {rss / GB:.1f} GB above --max-rss-gb {max_rss} after {now:.0f} s"
                kill_group(proc, signal.SIGKILL)
                break
            if now > timeout:
                stopped = f"killed: still running after --timeout {timeout:.0f} s"
                kill_group(proc, signal.SIGTERM)  # lab marks its run incomplete on SIGTERM
                for _ in range(100):
                    time.sleep(0.1)
                    if (usage := reap(False)) is not None:
                        break
                else:
                    kill_group(proc, signal.SIGKILL)
                break
            time.sleep(interval)
        if usage is None:
            usage = reap(True)
        wall = time.perf_counter() - t0
        rc = proc.returncode
    maxrss_kb = usage.ru_maxrss  # KiB on Linux
    cpu = usage.ru_utime + usage.ru_stime
    stderr_tail = (log_dir / "stderr.log").read_text(errors="replace")[-3000:]
    return {
        "command": cmd, "returncode": rc, "stopped": stopped, "wall_s": wall,
        "peak_rss_gb": peak["rss"] / GB, "peak_rss_at_s": peak["at_s"], "peak_anon_rss_gb": peak["anon"] / GB,
        "max_processes": peak["processes"], "ru_maxrss_children_gb": maxrss_kb * 1024 / GB,
        "cpu_s": cpu, "cpu_note": "user + system seconds of the run and the descendants it waited for (wait4)",
        "sample_interval_s": interval,
        "timeline_1s": {"columns": ["t_s", "rss_gb", "anon_rss_gb", "load_1min"], "rows": timeline}, "stderr_tail": stderr_tail,
    }


# --- per-module costs and extrapolation -----------------------------------------------------------

def _seconds(entry: dict) -> float | None:
    for key in SECONDS_KEYS:
        v = entry.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    for v in entry.values():  # e.g. {"timing": {"seconds": ...}}
        if isinstance(v, dict):
            s = _seconds(v)
            if s is not None:
                return s
    return None


def unit_timings(manifest: dict) -> tuple[list[dict], str | None]:
    """Per-unit (name, seconds, other numbers) from the manifest, or ([], why not)."""
    for key in ("units", "unit_timings", "timings"):
        units = manifest.get(key)
        if units:
            break
    else:
        return [], f"no 'units' in manifest.json (keys: {sorted(manifest)})"
    if isinstance(units, dict):
        entries = [{"id": k, **v} if isinstance(v, dict) else {"id": k, "seconds": v} for k, v in units.items()]
    elif isinstance(units, list):
        entries = [u for u in units if isinstance(u, dict)]
    else:
        return [], f"manifest '{key}' is a {type(units).__name__}, not a list or dict"
    out = []
    for e in entries:
        names = []
        for k in NAME_KEYS:
            v = e.get(k)
            names += [str(x) for x in v] if isinstance(v, (list, tuple)) else [v] if isinstance(v, str) else []
        out.append({"names": names, "seconds": _seconds(e), "checkpoint": e.get("checkpoint"),
                    "worker": e.get("worker"), "kind": e.get("kind") or e.get("scope"),
                    "numbers": {k: v for k, v in e.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}})
    return out, None


def _module_of(names: list[str], shapes: dict[str, tuple[int, int]]) -> str | None:
    """The module (tensor key without .weight) that a unit's names (label, key, ...) refer to, if any."""
    for name in names:
        for candidate in (name, name.removesuffix(".weight"), name.split(":")[-1].strip(), name.split("/")[-1]):
            if candidate in shapes:
                return candidate
    hits = [m for name in names for m in shapes if m in name]  # e.g. "ft: model.layers.0.mlp.up_proj"
    return max(hits, key=len) if hits else None


def role_costs(mats: dict[str, dict], floor: dict, run: dict | None, units: list[dict], cores: int,
               workers: int) -> dict:
    """Seconds per module of each role of the 1B pair, measured (units) or estimated (floor × ratio)."""
    shapes = {k.removesuffix(".weight"): tuple(t["shape"]) for k, t in mats.items()}
    eig_each = {tuple(p["shape"]): p["seconds_each"] for p in floor["eigensolve"]}
    bw = floor["read_bandwidth_gb_s"] * GB
    roles: dict[str, dict] = {}
    for module, shape in shapes.items():
        role = module_name(module).role
        r = roles.setdefault(role, {"shape": list(shape), "modules": 0, "seconds": []})
        r["modules"] += 1
    bytes_each = {role: 2 * r["shape"][0] * r["shape"][1] * 2 for role, r in roles.items()}  # bf16, both
    cores_per_unit = cores / workers  # what one unit of the run had of this machine
    timed = [(u, _module_of(u["names"], shapes)) for u in units if u["seconds"] is not None]
    matched = [(u, m) for u, m in timed if m is not None and u.get("checkpoint") != "controls"]
    other = [u for u, m in timed if m is None or u.get("checkpoint") == "controls"]
    if matched:
        source = (f"measured: {len(matched)} per-unit timings from manifest.json (compute = unit − read floor); "
                  f"{len(other)} other units (controls, ...) took {sum(u['seconds'] for u in other):.1f} s")
        for u, m in matched:
            roles[module_name(m).role]["seconds"].append(u["seconds"])
        for role, r in roles.items():
            mean = float(np.mean(r["seconds"])) if r["seconds"] else None
            r["mean_s"] = mean
            r["compute_s"] = max(0.0, mean - bytes_each[role] / bw) if mean is not None else None
        timed = [r["compute_s"] / eig_each[tuple(r["shape"])] for r in roles.values() if r["compute_s"] is not None]
        for role, r in roles.items():  # a role without timings: the median measured / floor ratio
            if r["compute_s"] is None:
                r["compute_s"] = eig_each[tuple(r["shape"])] * float(np.median(timed))
                r["mean_s"] = r["compute_s"] + bytes_each[role] / bw
                r["estimated"] = True
    else:
        complete = run and run.get("returncode") == 0 and not run.get("stopped")
        if complete and floor.get("eigensolve_threads") == 1 and run.get("cpu_s"):  # in core-seconds
            ratio = (run["cpu_s"] - floor["read_floor_s"]) / floor["eigensolve_serial_s"]
            cores_per_unit = 1.0
            source = (f"estimated (no per-unit timings in manifest.json), in core-seconds: compute = the module's "
                      f"one-thread eigensolve CPU time × (run CPU − read floor) / Σ eigensolves = × {ratio:.2f}")
        elif complete:
            ratio = (run["wall_s"] - floor["read_floor_s"]) / floor["eigensolve_serial_s"]
            source = (f"estimated (no per-unit timings in manifest.json): compute = the module's eigensolve × "
                      f"(wall − read floor) / Σ eigensolves = eigensolve × {ratio:.2f}")
        else:
            ratio = 1.0
            source = "floor only (no completed run, no per-unit timings): compute = the module's eigensolve"
            cores_per_unit = floor["eigensolve_threads"]
        for role, r in roles.items():
            r["compute_s"] = eig_each[tuple(r["shape"])] * ratio
            r["mean_s"] = r["compute_s"] + bytes_each[role] / bw
    for role, r in roles.items():
        rows, cols = r["shape"]
        r.update(read_s=bytes_each[role] / bw, gram_flops=gram_flops(rows, cols),
                 central_cut=list(central_cut(rows, cols)),
                 over_eigensolve=r["mean_s"] / eig_each[tuple(r["shape"])])  # × the module's own floor solve
        del r["seconds"]
    return {"source": source, "cores": cores, "concurrent_units": workers, "cores_per_unit": cores_per_unit,
            "roles": roles}


def model_modules(m: dict) -> list[tuple[str, int, int, int]]:
    """(role, rows, cols, count) of every 2-D weight of a LLaMA-shaped model."""
    h, i, n, kv = m["hidden"], m["intermediate"], m["layers"], m["kv_heads"] * m["head_dim"]
    mods = [("q", m["heads"] * m["head_dim"], h, n), ("k", kv, h, n), ("v", kv, h, n),
            ("o", h, m["heads"] * m["head_dim"], n), ("gate", i, h, n), ("up", i, h, n), ("down", h, i, n),
            ("embed", m["vocab"], h, 1)]
    if not m["tied"]:
        mods.append(("lm_head", m["vocab"], h, 1))
    return mods


def extrapolate(costs: dict, floor: dict, controls: bool, target_cores=(None, 16)) -> dict:
    """Time of each pair in MODELS on this machine and on others, with the arithmetic as text."""
    bw = floor["read_bandwidth_gb_s"] * GB
    roles = costs["roles"]
    cores_per_unit = costs["cores_per_unit"]
    eig_each = {tuple(p["shape"]): p["seconds_each"] for p in floor["eigensolve"]}
    out = {}
    for label, m in MODELS.items():
        lines, compute, eig_floor, read_bytes, largest, seen = [], 0.0, 0.0, 0, (0, 0), set()
        for role, rows, cols, count in model_modules(m):
            ref = roles.get(role) or roles["embed"]  # a tied 1B model has no lm_head of its own
            n = count + (1 if controls and (rows, cols) not in seen else 0)  # one control per shape
            seen.add((rows, cols))
            ratio = gram_flops(rows, cols) / ref["gram_flops"]
            c = ref["compute_s"] * ratio
            e = eig_each[tuple(ref["shape"])] * ratio
            b = 2 * rows * cols * 2 * count
            dl, dr = central_cut(rows, cols)
            lines.append(f"{role:<7} {rows}×{cols} ×{n}: central cut {dl}×{dr}, flops / 1B {role if role in roles else 'embed'} "
                         f"{ref['shape'][0]}×{ref['shape'][1]} = {ratio:.2f}; compute {n} × {ref['compute_s']:.3f} s × {ratio:.2f}"
                         f" = {n * c:.0f} s; read {b / GB:.2f} GB")
            compute += n * c
            eig_floor += n * e
            read_bytes += b
            largest = max(largest, (rows, cols), key=lambda s: s[0] * s[1])
        read = read_bytes / bw
        per = {}
        for c in target_cores:
            cores = c or costs["cores"]
            t = compute * cores_per_unit / cores + read
            f = eig_floor * floor["eigensolve_threads"] / cores + read
            per[f"{cores}_cores"] = {"seconds": t, "hours": t / 3600, "floor_seconds": f,
                                     "arithmetic": f"{compute:.0f} s × {cores_per_unit:g} / {cores} + {read_bytes / GB:.0f} GB "
                                                   f"/ {bw / GB:.2f} GB/s = {t:.0f} s ({t / 3600:.2f} h)"}
        out[label] = {"config": m, "modules": lines, "compute_s_this_machine_serial_units": compute,
                      "read_bytes": read_bytes, "read_s": read,
                      "largest_matrix": {"shape": list(largest), "float64_gb": largest[0] * largest[1] * 8 / GB},
                      "time": per}
    return out


# --- main ----------------------------------------------------------------------------------------

def weightwatcher(python: Path, ft: Path, out: Path, lab_args: list[str], interval: float, timeout: float,
                  max_rss: float) -> dict:
    """WeightWatcher's analyze() on the fine-tuned model (bench/weightwatcher_pair.py in its own venv), timed
    and its RSS sampled as the lab run's; lab's ``--modules REGEX`` selects the same tensors there."""
    if not python.is_file():
        return {"error": f"{python} not found: make WeightWatcher's venv as bench/RESULTS.md 'How to run' says"}
    modules = next((lab_args[i + 1] for i, a in enumerate(lab_args[:-1]) if a == "--modules"), None)
    report = out / "weightwatcher.json"
    cmd = [str(python), str(HERE / "weightwatcher_pair.py"), str(ft), str(report)] + (["--modules", modules] if modules else [])
    print("weightwatcher:", " ".join(cmd), flush=True)
    run = run_analysis(cmd, out / "bench-logs-weightwatcher", interval, timeout, max_rss)
    if run["returncode"] == 0:
        run.update(json.loads(report.read_text()))
    print(f"  rc {run['returncode']}: wall {run['wall_s']:.1f} s, CPU {run['cpu_s']:.0f} s, "
          f"peak RSS {run['peak_rss_gb']:.2f} GB, {run.get('matrices_analysed')} matrices", flush=True)
    return run


def _workers(lab_args: list[str]) -> int:
    for i, a in enumerate(lab_args):
        if a == "--workers" and i + 1 < len(lab_args):
            return int(lab_args[i + 1])
        if a.startswith("--workers="):
            return int(a.split("=", 1)[1])
    return 1


def print_floor(floor: dict) -> None:
    print(f"  page cache held {floor['page_cache_resident_before']['mean_fraction']} of the files before; "
          f"{floor['file_bytes'] / GB:.2f} GB in {floor['read_s']:.2f} s = {floor['read_bandwidth_gb_s']:.2f} GB/s; "
          f"read floor {floor['read_floor_s']:.2f} s + eigensolves {floor['eigensolve_serial_s']:.1f} s × "
          f"{floor['eigensolve_threads']} thread(s) / {floor['cores']} cores = {floor['floor_s']:.1f} s", flush=True)
    for p in floor["eigensolve"]:
        print(f"  {p['shape'][0]}×{p['shape'][1]}: central cut {p['central_cut'][0]}×{p['central_cut'][1]}, "
              f"{p['seconds_each']:.3f} s × ({p['modules']} + {p['controls']}) = {p['seconds']:.1f} s")


def read_manifest(path: Path, lab_args: list[str]) -> dict:
    """What the run's manifest says about its units: timings, and how many ran at once."""
    if not path.is_file():
        return {"units": [], "units_note": f"{path} not found", "concurrent_units": _workers(lab_args)}
    manifest = json.loads(path.read_text())
    units, why = unit_timings(manifest)
    if not units:  # a stopped run: its finished units are the records of its journal (lab.store.parts)
        from lab.store.parts import Parts

        parts = Parts(path.parent)
        finished = [parts.meta(key) for key in sorted(parts.done())]
        if finished:
            units, why = unit_timings({"units": finished})
            why = why or f"{len(units)} units from parts/journal (the run did not finish)"
    # units that ran at once: the distinct workers the units record, else the executor's description
    seen = {u["worker"] for u in units if u.get("worker")}
    said = re.search(r"(\d+)\s+(?:local\s+)?workers?", str(manifest.get("execution", "")))
    workers = len(seen) if seen else int(said.group(1)) if said else _workers(lab_args)
    print(f"manifest: status {manifest.get('status')}; " + (why or f"{len(units)} unit timings"))
    if units:
        print("  first units:", json.dumps(units[:3])[:600])
    return {"keys": sorted(manifest), "status": manifest.get("status"), "execution": manifest.get("execution"),
            "concurrent_units": workers, "units_note": why, "units": units}


def derive(result: dict, ft: Path) -> None:
    """Per-module costs and the extrapolation, from the floor, the run and the manifest in ``result``."""
    floor, run = result["floor"], result.get("run")
    if run is not None:
        run["wall_over_floor"] = run["wall_s"] / floor["floor_s"]
        if run.get("cpu_s") is not None and floor["eigensolve_threads"] == 1:
            # core-seconds against core-seconds: what a loaded, shared machine distorts least
            run["cpu_over_floor"] = run["cpu_s"] / (floor["read_floor_s"] + floor["eigensolve_serial_s"])
    manifest = result.get("manifest") or {}
    workers = manifest.get("concurrent_units") or _workers(result.get("lab_args", []))
    costs = role_costs(matrices(ft), floor, run, manifest.get("units", []), floor["cores"], workers)
    result["per_module"] = costs
    print(f"per-module costs ({costs['source']}):")
    for role, r in costs["roles"].items():
        print(f"  {role:<6} {r['shape'][0]}×{r['shape'][1]} ×{r['modules']}: {r['mean_s']:.3f} s each "
              f"(read {r['read_s']:.3f} s, compute {r['compute_s']:.3f} s)")
    result["extrapolation"] = extrapolate(costs, floor, controls=True)
    for label, e in result["extrapolation"].items():
        print(f"{label}:")
        for line in e["modules"]:
            print("  " + line)
        for key, t in e["time"].items():
            print(f"  {key.replace('_', ' ')}: {t['arithmetic']}  [floor {t['floor_seconds']:.0f} s]")


def main() -> None:
    argv = sys.argv[1:]
    lab_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 epilog="Arguments after -- are passed to `lab analyze` (e.g. -- --workers 2).")
    ap.add_argument("--pair", type=Path, default=llama1b_pair.DEFAULT_OUT,
                    help="folder of bench/llama1b_pair.py (made there if missing)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/lab-bench/memory-out"), help="lab's --out (results folder)")
    ap.add_argument("--interval", type=float, default=0.05, help="RSS sampling interval, seconds")
    ap.add_argument("--timeout", type=float, default=3600.0, help="kill the run after this many seconds")
    ap.add_argument("--max-rss-gb", type=float, default=12.0, help="kill the run when its RSS exceeds this")
    ap.add_argument("--floor-repeats", type=int, default=2)
    ap.add_argument("--floor-threads", type=int, default=1,
                    help="BLAS threads per floor eigensolve; the floor runs cores/threads of them at once (default 1: "
                         "robust to a loaded machine, where multithreaded OpenBLAS stalls)")
    ap.add_argument("--no-run", action="store_true", help="measure the floor only")
    ap.add_argument("--refloor", type=Path, default=None, metavar="JSON",
                    help="measure the floor again for an earlier result (its run is kept; the JSON records when the "
                         "floor was measured) and rewrite that file")
    ap.add_argument("--reread", type=Path, default=None, metavar="JSON",
                    help="read the run folder's manifest (or a stopped run's parts) again for an earlier result, "
                         "recompute the per-module costs and extrapolation, and rewrite that file")
    ap.add_argument("--lab-rev", default=None,
                    help="run the lab package of this git revision instead of the working tree (e.g. the commit "
                         "before a rewrite, for a before/after comparison)")
    ap.add_argument("--json", type=Path, default=None, help="default bench/results/memory[_ARGS].json")
    ap.add_argument("--weightwatcher", action="store_true",
                    help="after the run, time WeightWatcher's analyze() on the fine-tuned model the same way (its RSS "
                         "sampled from outside), in its own venv (--ww-python); lab's --modules, if given after --, "
                         "selects the same tensors there (issue 23 §4)")
    ap.add_argument("--ww-python", type=Path, default=Path("/tmp/wwvenv/bin/python"))
    ap.add_argument("--no-floor", action="store_true",
                    help="leave out the eigensolve floor (minutes of one-thread solves); no per-module costs then")
    args = ap.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    earlier = args.refloor or args.reread
    if earlier is not None:  # redo the cheap parts of an earlier result, keep its run
        result = json.loads(earlier.read_text())
        pair = Path(result["pair"])
        if args.refloor:
            print(f"floor again for {earlier} ...", flush=True)
            floor = measure_floor(measure_read(pair / "base", pair / "ft"), pair / "ft", controls=True,
                                  repeats=args.floor_repeats, threads=args.floor_threads, cores=cores)
            floor["measured_separately"] = {
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "load_average": describe()["load_average"],
                "replaced": {k: result["floor"].get(k) for k in ("floor_s", "eigensolve_threads")}}
            result["floor"] = floor
            print_floor(floor)
        if args.reread and result.get("run"):
            if "run_folder" not in result:
                raise SystemExit(f"{earlier}: records no run_folder, so its run cannot be read again safely")
            folder = Path(result["run_folder"])
            result["manifest"] = read_manifest(folder / "manifest.json", result.get("lab_args", []))
        derive(result, pair / "ft")
        (args.json or earlier).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json or earlier}")
        return

    if args.json is None:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", " ".join(lab_args + ([f"rev {args.lab_rev}"] if args.lab_rev else []))).strip("-")
        args.json = HERE / "results" / (f"memory_{slug}.json" if slug else "memory.json")
    llama1b_pair.build(args.pair)
    base, ft = args.pair / "base", args.pair / "ft"
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine_before": describe(),
              "pair": str(args.pair), "pair_recipe": json.loads((args.pair / llama1b_pair.MARKER).read_text())["recipe"],
              "lab_args": lab_args}
    # the read floor first (it also warms the page cache for the run), then the run, then the
    # eigensolves: this process forks the run while still small, so the run's ru_maxrss (which
    # counts the RSS a child inherits at fork) is not inflated by the floor's 2 GB test matrix
    print("read floor: reading both checkpoints twice ...", flush=True)
    read = measure_read(base, ft)
    source = lab_source(args.lab_rev)
    result["lab"] = source["describe"]
    if not args.no_run:
        cmd = source["cmd"] + ["analyze", str(ft), "--base", str(base), "--controls", "--probes", PROBES,
                               "--out", str(args.out), "--run", "llama1b", "--overwrite", "--quiet", *lab_args]
        print("run:", " ".join(cmd), flush=True)
        launcher_rss = psutil.Process().memory_info().rss / GB
        result["run"] = run = run_analysis(cmd, args.out / "bench-logs", args.interval, args.timeout, args.max_rss_gb,
                                           env=source["env"], cwd=source["cwd"])
        run["launcher_rss_gb"] = launcher_rss  # the least ru_maxrss can show (a child starts as a copy)
        print(f"  rc {run['returncode']}{', ' + run['stopped'] if run['stopped'] else ''}: wall {run['wall_s']:.1f} s, "
              f"CPU {run['cpu_s']:.0f} s, peak RSS {run['peak_rss_gb']:.2f} GB "
              f"(anonymous {run['peak_anon_rss_gb']:.2f} GB) at {run['peak_rss_at_s']:.0f} s, "
              f"ru_maxrss {run['ru_maxrss_children_gb']:.2f} GB (this process: {launcher_rss:.2f} GB)", flush=True)
        if run["returncode"] != 0 and not run["stopped"]:
            print(run["stderr_tail"], file=sys.stderr)
        result["run_folder"] = str(args.out / "llama1b")
        result["manifest"] = read_manifest(args.out / "llama1b" / "manifest.json", lab_args)
    if args.weightwatcher:
        result["weightwatcher"] = weightwatcher(args.ww_python, ft, args.out, lab_args, args.interval, args.timeout,
                                                args.max_rss_gb)
        if result.get("run"):
            w, r = result["weightwatcher"], result["run"]
            result["lab_vs_weightwatcher"] = {"wall": r["wall_s"] / w["wall_s"], "peak_rss": r["peak_rss_gb"] / w["peak_rss_gb"],
                                              "cpu": r["cpu_s"] / w["cpu_s"]}
            print(f"lab / WeightWatcher: wall {result['lab_vs_weightwatcher']['wall']:.2f}, "
                  f"peak RSS {result['lab_vs_weightwatcher']['peak_rss']:.3f}", flush=True)
    if args.no_floor:
        result["machine_after"] = {"load_average": describe()["load_average"]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json} (no floor)")
        return
    print("eigensolve floor: one central-cut Gram + eigenvalues per shape ...", flush=True)
    result["floor"] = floor = measure_floor(read, ft, controls=True, repeats=args.floor_repeats,
                                            threads=args.floor_threads, cores=cores)
    print_floor(floor)
    derive(result, ft)
    result["machine_after"] = {"load_average": describe()["load_average"]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
