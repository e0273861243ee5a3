"""``lab demo``: the lab's main job on real data in one offline command.

Fine-tunes all-MiniLM-L6-v2 (packaged) on Python's standard-library docstrings with LoRA at
ranks 4, 16 and 64 (alpha = 2r) and with full fine-tuning, all on the attention query and value
projections, three saved steps each; analyses every run with every registered probe and random
controls against the MiniLM base; writes the report when the report module is installed; and
prints the entanglement entropy at the row|column cut next to ln r and Page's value.

``lab demo`` also trains MPS Adaptation (arXiv 2601.06788; r = 64, χ = 8, d1·d2 = 16·24 = 384) on
the same modules and squeezes the LoRA r = 64 run to r = 16 (LoRA-Squeeze's Post-Squeeze: exact SVD
from the factors), analysing both like the others; the squeeze table goes to ``WORKDIR/squeezes``. The MPS
run skips the probes that run the model on text (the engine loads PEFT adapters and full models only).

Everything is cached under the workdir (default: the user cache dir): a finished fine-tune (its
``COMPLETE`` marker and identical options) and a complete analysis of it (same probes, probe
options and other options) are reused by the next ``lab demo``, and so is the report when the
results and lab's report code are those it was written from.

The runs are independent: ``lab demo`` fine-tunes and analyses them ``--jobs`` at a time (default:
the usable cores, at most 4) in worker processes of one thread each, as the serial demo computes,
so the numbers are the same; a run's analysis starts as soon as its fine-tune has ended, so no
worker idles while the last fine-tunes run. The base's attention on the windows, the same for every
run, is computed by the first analysis and read by the others (``lab.probes.kept_base``).
``--quick`` is the smallest grid, to try the command.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional, Sequence

import typer

from lab.finetune.config import FinetuneConfig

if TYPE_CHECKING:  # pandas is imported where the summary is read: every `lab` command imports this module
    import pandas as pd

# Sized to finish in under 5 minutes on 2 cores: 3 checkpoints per run, 16 docstring pairs of
# ≤ 32 tokens a step (about 0.6 s a step on one core).
DEMO_STEPS = 30
DEMO_RANKS = (4, 16, 64)
DEMO_TARGETS = ["query", "value"]
# Only the trained modules: a full fine-tune's checkpoint holds every weight, and the untouched
# ones would enter the tables as zero updates.
DEMO_MODULES = r"attention\.self\.(query|value)$"
# The probes that run the model on text, sized for the demo: four lengths (the growth of the
# thresholds with L is fitted over >= 3; Cardy's chord over token cuts at each L) and two windows
# each, instead of 16 windows per length. Measured on MiniLM (CPU s of the attention probe's base
# step + one checkpoint, load 16): (32, 64) x 4 windows 9.5 + 12.0; four lengths x 4 windows
# 20.6 + 21.5; four lengths x 2 windows 9.2 + 15.6, which keeps the demo's analysis near its old cost.
DEMO_WINDOWS = {"seq_len": (32, 64, 128, 256), "windows": 2}
# Token cuts per length for the attention probe: every cut costs ~L^4/16 eigen-work per head (at
# L = 256 about 11 MiniLM forward passes per window); 24 evenly spaced cuts, symmetric in l <-> L - l,
# keep it near the forward passes' cost (every cut at L = 32, where 24 is nearly all 31)
DEMO_TOKEN_CUTS = 24
# MPS Adaptation (r, χ) and the squeeze (from the LoRA of rank, to rank) that `lab demo` adds
DEMO_MPS = (64, 8)
DEMO_SQUEEZE = (64, 16)
# The rank k at which `lab demo` merges its LoRA runs with svd and lego (stack keeps every unit)
DEMO_MERGE_K = 16
MERGE_METHODS = ("stack", "svd", "lego")  # linear needs equal ranks; the demo's differ
# `lab demo --quick`: the smallest grid that runs every step of the command (the tests' size)
QUICK = dict(ranks=(4,), full=True, steps=2, save_every=1, batch_size=4, max_length=16,
             windows={"seq_len": (16, 24, 32), "windows": 2})


@dataclass
class DemoResult:
    """What ``run_demo`` made: fine-tune folders and analysed runs by name, the summary table,
    the report files, wall seconds per phase, and the CPU seconds its jobs took (on a busy machine
    the work done, where wall time measures the neighbours). With worker processes the analyses
    overlap the last fine-tunes: ``seconds["finetune"]`` is then the wall time until the last
    fine-tune ended and ``seconds["analyze"]`` the time from then to the last analysis's end."""

    workdir: Path
    finetunes: dict[str, Path] = field(default_factory=dict)
    runs: dict[str, object] = field(default_factory=dict)  # name -> lab.store.Run
    summary: pd.DataFrame | None = None
    report: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # phase -> CPU seconds of its fine-tunes or analyses
    job_cpu: dict[str, float] = field(default_factory=dict)  # "finetune:NAME" / "analyze:NAME" -> CPU seconds
    reused: list[str] = field(default_factory=list)
    merges: dict[str, Path] = field(default_factory=dict)  # method -> merged adapter folder


def demo_configs(workdir: Path, *, ranks: Sequence[int] = DEMO_RANKS, full: bool = True, steps: int = DEMO_STEPS,
                 save_every: int | None = None, batch_size: int = 16, max_length: int = 32, seed: int = 0,
                 mps: tuple[int, int] | None = None) -> dict[str, FinetuneConfig]:
    """The demo grid by run name: ``lora-r{r}`` (alpha = 2r) for each rank, ``full``, and with ``mps``
    = (r, χ) ``mps-r{r}`` (alpha = 2r)."""
    common = dict(model="minilm", target_modules=list(DEMO_TARGETS), steps=steps, batch_size=batch_size,
                  save_every=save_every or max(1, steps // 3), max_length=max_length, seed=seed)
    grid = {f"lora-r{r}": FinetuneConfig(out=str(workdir / "finetunes" / f"lora-r{r}"), method="lora", r=r, alpha=2.0 * r, **common)
            for r in ranks}
    if full:
        grid["full"] = FinetuneConfig(out=str(workdir / "finetunes" / "full"), method="full", **common)
    if mps is not None:
        r, chi = mps
        grid[f"mps-r{r}"] = FinetuneConfig(out=str(workdir / "finetunes" / f"mps-r{r}"), method="mps", r=r, alpha=2.0 * r,
                                           chi=chi, **common)
    return grid


def run_demo(workdir: str | Path | None = None, *, ranks: Sequence[int] = DEMO_RANKS, full: bool = True,
             steps: int = DEMO_STEPS, save_every: int | None = None, batch_size: int = 16, max_length: int = 32,
             seed: int = 0, probes: Sequence[str] = ("all",), report: bool = True, progress: bool = True,
             console=None, mps: tuple[int, int] | None = None, squeeze: tuple[int, int] | None = None,
             merge: int | None = None, windows: dict | None = None, jobs: int = 1) -> DemoResult:
    """Fine-tune, analyse and summarise the demo grid under ``workdir`` and return what was made.

    ``windows`` (default ``DEMO_WINDOWS``: ``seq_len`` and ``windows``) sizes every probe that runs
    the model on text (attention, thresholds, forgetting, ...).

    ``workdir`` defaults to ``platformdirs.user_cache_dir("lab")/demo``. The smaller keyword
    values (fewer ranks, steps) make a quick version for tests. ``mps`` = (r, χ) adds an MPS
    Adaptation run; ``squeeze`` = (r_from, k) squeezes the last checkpoint of ``lora-r{r_from}`` to
    rank k (run ``squeeze-r{k}``); ``merge`` = k merges the last checkpoints of the LoRA runs
    (two or more) with stack, and with svd and lego at rank k, equal weights (``lab.merge.merge``;
    adapters under ``merges/``, their errors in the ``merges`` run of the results); ``lab demo``
    passes ``DEMO_MPS``, ``DEMO_SQUEEZE`` and ``DEMO_MERGE_K``.

    ``jobs`` > 1 runs the fine-tunes, the squeeze and the analyses that many at a time in spawned
    worker processes (each one-threaded, as a serial run is, so the numbers are the same), each
    analysis as soon as its run is trained: the demo's runs are independent, and one-threaded work
    leaves the other cores idle. A script that calls
    it so must guard its top level with ``if __name__ == "__main__":`` (spawned workers import it).
    The report is reused when the results and the report's code are unchanged since it was written.
    """
    from rich.console import Console

    from lab.finetune.models import default_cache_dir
    from lab.present.valleys import valley_summary

    console = console or Console(stderr=True, quiet=not progress)
    workdir = Path(workdir) if workdir is not None else default_cache_dir() / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    result = DemoResult(workdir=workdir)
    configs = demo_configs(workdir, ranks=ranks, full=full, steps=steps, save_every=save_every,
                           batch_size=batch_size, max_length=max_length, seed=seed, mps=mps)
    t0 = time.perf_counter()
    with _workers(jobs) as pool:
        if pool is not None:
            retrained = _pipeline(configs, squeeze, probes, result, console, progress, windows or DEMO_WINDOWS, pool, jobs)
        else:
            retrained = _finetune_all(configs, result, console, progress)
            if squeeze is not None:
                with one_blas_thread():
                    retrained |= _squeeze(configs, retrained, squeeze, result)
            result.seconds["finetune"] = round(time.perf_counter() - t0, 1)

            t1 = time.perf_counter()
            _analyze_all(configs, retrained, probes, result, console, progress, windows or DEMO_WINDOWS)
            result.seconds["analyze"] = round(time.perf_counter() - t1, 1)
    if merge is not None:
        t3 = time.perf_counter()
        # one BLAS thread: on a loaded 2-core machine (load 11) the stack merge's QRs took 159 s wall and
        # 27 s CPU with two threads (spinning), 10 s and 3 s with one
        with one_blas_thread():
            _merge_all(configs, retrained, merge, result)
        result.seconds["merge"] = round(time.perf_counter() - t3, 1)

    result.summary = valley_summary(list(result.runs.values()))
    result.summary.to_csv(workdir / "summary.csv", index=False)
    if report:
        t2 = time.perf_counter()
        result.report = _write_report(workdir, console, result.reused)
        result.seconds["report"] = round(time.perf_counter() - t2, 1)
    result.seconds["total"] = round(time.perf_counter() - t0, 1)
    return result


def _finetune_bars(configs: dict[str, FinetuneConfig], result: DemoResult, bar, note: str = "") -> dict[str, int]:
    """A progress row per fine-tune; the fine-tunes to do (name -> its row): those not complete with
    these options (the others are recorded as reused)."""
    from lab.finetune.train import is_complete

    todo = {}
    for name, config in configs.items():
        result.finetunes[name] = Path(config.out)
        if is_complete(config.out, config):
            bar.add_task(f"fine-tune {name}", total=config.steps, completed=config.steps, note="cached")
            result.reused.append(f"finetune:{name}")
            continue
        todo[name] = bar.add_task(f"fine-tune {name}", total=config.steps, note=note)
    return todo


def _finetune_progress(console, progress: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                    TimeElapsedColumn(), console=console, disable=not progress)


def _finetune_all(configs: dict[str, FinetuneConfig], result: DemoResult, console, progress: bool) -> set[str]:
    """Fine-tune here, one after another (the serial demo), with a bar per step."""
    from lab.finetune.train import finetune

    retrained = set()
    with _finetune_progress(console, progress) as bar:
        todo = _finetune_bars(configs, result, bar)
        for name, task in todo.items():
            cpu = time.process_time()
            finetune(configs[name], overwrite=True,
                     on_step=lambda step, loss, task=task: bar.update(task, completed=step, note=f"loss {loss:.4f}"))
            retrained.add(name)
            _add_cpu(result, "finetune", name, time.process_time() - cpu)
    return retrained


def _add_cpu(result: DemoResult, phase: str, name: str, seconds: float) -> None:
    result.job_cpu[f"{phase}:{name}"] = round(seconds, 1)
    result.cpu[phase] = round(result.cpu.get(phase, 0.0) + seconds, 1)


def _workers(jobs: int):
    """A pool of ``jobs`` worker processes, or a context holding None for one job at a time here.

    Spawned, never forked: a fork of a process whose torch (OpenMP) threads have run can hang.
    """
    from contextlib import nullcontext

    if jobs <= 1:
        return nullcontext(None)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_one_thread_process)


def _one_thread_process() -> None:
    """A demo worker computes with one thread, as the serial demo does (the pool's size uses the cores):
    the thread pools loaded already (numpy's, imported with this module) limited now, those loaded
    later (torch's) by their variables."""
    import os

    _quiet_transformers()
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=1)  # for the process's life: nothing restores it


def _quiet_transformers() -> None:
    """No per-model "Loading weights" bars from transformers (a demo loads the model dozens of times,
    and its own progress bars say where it is), and in a spawned worker the same filter as the ``lab``
    command's for the deprecation PEFT triggers on every adapter load (a worker starts with none). Set in
    the demo's worker processes and by the ``lab demo`` command; ``run_demo`` called from Python leaves
    the caller's settings alone."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def _finetune_job(config: FinetuneConfig) -> tuple[float, float]:
    """One fine-tune in a worker process: its last step's loss, and the CPU seconds it took."""
    import json

    from lab.finetune.config import LOSS_FILE
    from lab.finetune.train import finetune

    cpu = time.process_time()
    out = finetune(config, overwrite=True)
    return float(json.loads((out / LOSS_FILE).read_text().splitlines()[-1])["loss"]), time.process_time() - cpu


def _analyze_job(path: Path, base: Path, results: Path, name: str, probes: list[str], options: dict) -> float:
    """One run's analysis (in a worker process, or here when serial); the CPU seconds it took."""
    import lab

    cpu = time.process_time()
    with one_blas_thread():
        lab.analyze(path, base=base, out=results, run=name, probes=probes, options=options, modules=DEMO_MODULES,
                    controls=True, overwrite=True, progress=False)
    return time.process_time() - cpu


def _squeeze_target(configs: dict[str, FinetuneConfig], squeeze: tuple[int, int], result: DemoResult) -> tuple[str, str]:
    """(source, name) of the squeeze: ``lora-r{r_from}`` squeezed into ``finetunes/squeeze-r{k}``, which
    is analysed like the other runs (its modules and base are the source's)."""
    from lab.errors import InputError

    r_from, k = squeeze
    source = f"lora-r{r_from}"
    if source not in configs:
        raise InputError(f"the demo squeezes {source}, which is not in the grid; add rank {r_from}")
    name = f"squeeze-r{k}"
    result.finetunes[name] = result.workdir / "finetunes" / name
    configs[name] = configs[source]
    return source, name


def _squeeze_is_current(source: str, name: str, retrained: set[str], result: DemoResult) -> bool:
    """Whether the squeezed adapter is there and its source was not (or will not be) trained again."""
    return source not in retrained and (result.finetunes[name] / "adapter_model.safetensors").is_file()


def _squeeze(configs: dict[str, FinetuneConfig], retrained: set[str], squeeze: tuple[int, int], result: DemoResult) -> set[str]:
    """Squeeze the last checkpoint of ``lora-r{r_from}`` to rank k into ``finetunes/squeeze-r{k}``
    (redone when its source was retrained or its output is missing); the table to ``squeezes/``."""
    source, name = _squeeze_target(configs, squeeze, result)
    if _squeeze_is_current(source, name, retrained, result):
        result.reused.append(f"squeeze:{name}")
        return set()
    _squeeze_job(Path(configs[source].out), result.finetunes[name], squeeze[1], result.workdir)
    return {name}


def _squeeze_job(source: Path, out: Path, k: int, workdir: Path) -> float:
    """The squeeze of ``source``'s last checkpoint to rank k (here or in a worker); the CPU seconds it took."""
    from lab.squeeze.api import squeeze as run_squeeze

    cpu = time.process_time()
    last = max(Path(source).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    with one_blas_thread():
        run_squeeze(last, out, rank=k, results=workdir / "squeezes", run="squeezes", overwrite=True)
    return time.process_time() - cpu


def _merge_all(configs: dict[str, FinetuneConfig], retrained: set[str], k: int, result: DemoResult) -> None:
    """Merge the LoRA runs' last checkpoints with every method of MERGE_METHODS (redone when one of
    them was retrained or a merged adapter is missing); nothing to do with fewer than two."""
    from lab.merge.api import merge

    sources = sorted((n for n, c in configs.items() if n.startswith("lora-r") and c.method == "lora"),
                     key=lambda n: int(n.removeprefix("lora-r")))
    if len(sources) < 2:
        return
    last = [max(Path(configs[n].out).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])) for n in sources]
    table = result.workdir / "results" / "merges" / "merge.parquet"
    for method in MERGE_METHODS:
        out = result.workdir / "merges" / (method if method == "stack" else f"{method}-k{k}")
        result.merges[method] = out
        if not retrained.intersection(sources) and (out / "adapter_model.safetensors").is_file() and table.is_file():
            result.reused.append(f"merge:{out.name}")
            continue
        merge(last, out, method, rank=None if method == "stack" else k, results=result.workdir / "results",
              run="merges", overwrite=True)


def _analysis_wanted(probes: Sequence[str], windows: dict, results_dir: Path) -> tuple[dict, dict]:
    """(what a current analysis's manifest records, the probe options to analyse with)."""
    import json

    from lab.finetune.models import minilm_path
    from lab.probes.options import as_json, build_options
    from lab.probes.registry import resolve

    base = minilm_path()
    # each run alone: pair-scope probes (no_hair) would compare a run's own checkpoints, at the
    # default window sizes; the demo's LoRA-vs-full comparison is analyses/no_hair.py, across runs
    chosen = [p for p in resolve(list(probes)) if p.scope != "pair"]
    # every probe that runs the model on text gets the demo's window sizes (its options have both fields)
    options = {p.name: dict(windows) for p in chosen
               if p.options is not None and {"seq_len", "windows"} <= set(getattr(p.options, "__dataclass_fields__", {}))}
    if "attention" in options:
        options["attention"]["token_cuts"] = DEMO_TOKEN_CUTS
        # the base's attention on the windows is the same for every run: computed by the first analysis,
        # read by the others (lab.probes.kept_base; content-addressed, so a changed input is computed again)
        options["attention"] |= {"cache_dir": str((results_dir / KEPT_BASE).resolve()), "reuse_base": True}
    # every option of every probe, as the manifest records them: an analysis made with other probe
    # options (the demo's sizes changed by an upgrade, say) is redone, not reused
    built = build_options(chosen, options)
    probe_options = json.loads(json.dumps({p.name: as_json(built[p.name]) for p in chosen}, default=str))
    wanted = {"probes": [p.name for p in chosen], "probe_options": probe_options, "controls": True,
              "modules": DEMO_MODULES, "base": str(base.resolve())}
    return wanted, options


KEPT_BASE = ".lab-cache/kept"  # under the results: the base's part of the probes that run the model on text


def _analyze_progress(console, progress: bool):
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(finished_text="✓"), TextColumn("{task.description:<18}"), TextColumn("{task.fields[note]}"),
                    TimeElapsedColumn(), console=console, disable=not progress)


def _analysis_bars(names, retrained: set[str], wanted: dict, result: DemoResult, bar) -> dict[str, int]:
    """A progress row per analysis; the analyses to do (name -> its row): those of runs trained again
    and those not complete with these options (the others are opened and recorded as reused)."""
    from lab.store import open_run

    results_dir = result.workdir / "results"
    todo = {}
    for name in names:
        folder = results_dir / name
        if name not in retrained and _analysis_is_current(folder, wanted):
            bar.add_task(f"analyze {name}", total=1, completed=1, note="cached")
            result.runs[name] = open_run(folder)
            result.reused.append(f"analyze:{name}")
            continue
        todo[name] = bar.add_task(f"analyze {name}", total=None, note=", ".join(wanted["probes"]))
    return todo


def _analyze_all(configs: dict[str, FinetuneConfig], retrained: set[str], probes: Sequence[str], result: DemoResult,
                 console, progress: bool, windows: dict) -> None:
    """Analyse here, one run after another (the serial demo)."""
    from lab.finetune.models import minilm_path
    from lab.store import open_run

    results_dir = result.workdir / "results"
    wanted, options = _analysis_wanted(probes, windows, results_dir)
    with _analyze_progress(console, progress) as bar:
        todo = _analysis_bars(configs, retrained, wanted, result, bar)
        for name in todo:
            cpu = _analyze_job(result.finetunes[name], minilm_path(), results_dir, name, wanted["probes"], options)
            result.runs[name] = open_run(results_dir / name)
            _add_cpu(result, "analyze", name, cpu)
            bar.update(todo[name], total=1, completed=1)
    result.runs = {name: result.runs[name] for name in configs}  # run order


@dataclass(frozen=True)
class _Job:
    """One job of the pipeline: what a worker runs, the jobs it waits for, and its place in the queue."""

    run: object
    args: tuple
    after: frozenset = frozenset()
    rank: tuple = ()  # smaller first among the jobs ready to start


def _pipeline(configs: dict[str, FinetuneConfig], squeeze: tuple[int, int] | None, probes: Sequence[str],
              result: DemoResult, console, progress: bool, windows: dict, pool, slots: int) -> set[str]:
    """The fine-tunes, the squeeze and the analyses on ``pool``, each analysis started as soon as its
    run's fine-tune has ended, so no worker waits for the slowest fine-tune while analyses are ready:
    the fine-tunes first (longest first), then the squeeze, then the analyses (longest first). The
    names of the runs trained (or squeezed) again are returned.

    ``result.seconds``: ``finetune`` is the wall time until the last fine-tune (or the squeeze) ended,
    ``analyze`` the time from then to the last analysis's end (analyses ran before it too)."""
    from contextlib import nullcontext

    from rich.console import Group
    from rich.live import Live

    from lab.finetune.models import minilm_path
    from lab.store import open_run

    t0 = time.perf_counter()
    results_dir = result.workdir / "results"
    wanted, options = _analysis_wanted(probes, windows, results_dir)
    fine, ana = _finetune_progress(console, progress), _analyze_progress(console, progress)
    # both kinds of row in one live display (two Progress contexts at once would fight over the terminal)
    with Live(Group(fine, ana), console=console, refresh_per_second=4) if progress else nullcontext():
        fine_rows = _finetune_bars(configs, result, fine, note="waiting")
        retrained = set(fine_rows)
        jobs = {f"finetune:{n}": _Job(_finetune_job, (configs[n],), rank=(0, -_weight(n, configs)))
                for n in fine_rows}
        if squeeze is not None:
            source, name = _squeeze_target(configs, squeeze, result)
            if _squeeze_is_current(source, name, retrained, result):
                result.reused.append(f"squeeze:{name}")
            else:
                retrained.add(name)
                jobs[f"squeeze:{name}"] = _Job(_squeeze_job, (Path(configs[source].out), result.finetunes[name], squeeze[1],
                                                               result.workdir),
                                                frozenset({f"finetune:{source}"} & set(jobs)), rank=(1,))
        analyze_rows = _analysis_bars(configs, retrained, wanted, result, ana)
        for n in analyze_rows:
            first = {f"finetune:{n}", f"squeeze:{n}"} & set(jobs)
            jobs[f"analyze:{n}"] = _Job(_analyze_job, (result.finetunes[n], minilm_path(), results_dir, n, wanted["probes"], options),
                                        frozenset(first), rank=(2, -_weight(n, configs)))
        trained_by = time.perf_counter()
        for job, value in _scheduled(pool, jobs, slots):
            kind, name = job.split(":", 1)
            if kind == "finetune":
                loss, cpu = value
                fine.update(fine_rows[name], completed=configs[name].steps, note=f"loss {loss:.4f}")
            elif kind == "analyze":
                cpu = value
                result.runs[name] = open_run(results_dir / name)
                ana.update(analyze_rows[name], total=1, completed=1)
            else:
                cpu = value
            _add_cpu(result, "analyze" if kind == "analyze" else "finetune", name, cpu)
            if kind != "analyze":
                trained_by = time.perf_counter()
    end = time.perf_counter()
    result.seconds["finetune"] = round(trained_by - t0, 1)
    result.seconds["analyze"] = round(end - trained_by, 1)
    result.runs = {name: result.runs[name] for name in configs}  # run order, whichever finished first
    return retrained


def _scheduled(pool, jobs: dict[str, _Job], slots: int):
    """Run ``jobs`` on ``pool``, at most ``slots`` at once, each when the jobs it waits for have ended,
    the ready one of smallest rank first; yield (job name, its return) as each ends.

    Only running jobs are ever submitted, so a free worker takes the best job ready at that moment. The
    first failure is raised here (a ``LabError`` stays one) and nothing more is started.
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    waiting = dict(jobs)
    running: dict = {}
    done: set[str] = set()
    while waiting or running:
        ready = sorted((n for n, j in waiting.items() if j.after <= done), key=lambda n: (waiting[n].rank, n))
        for name in ready[:max(0, slots - len(running))]:
            job = waiting.pop(name)
            running[pool.submit(job.run, *job.args)] = name
        if not running:
            raise RuntimeError(f"the demo's jobs wait for each other: {sorted(waiting)}")  # a bug in the plan
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            name = running.pop(future)
            value = future.result()
            done.add(name)
            yield name, value


def _weight(name: str, configs: dict[str, FinetuneConfig]) -> float:
    """How long a run's jobs take, relatively: measured, MPS r = 64 > LoRA r = 64 > full > LoRA r = 16 >
    LoRA r = 4 > the squeezed run, in both phases."""
    config = configs[name]
    if name.startswith("squeeze-"):
        return 0.0
    if config.method == "full":
        return 48.0
    return float(config.r) + (0.5 if config.method == "mps" else 0.0)


def one_blas_thread():
    """A context with BLAS/LAPACK limited to one thread, when threadpoolctl is installed.

    The demo's matrices are 384×384: splitting their eigendecompositions over threads gains
    little on an idle 2-core machine, and on a busy one oversubscribed threads made each
    ``eigh`` 3–5× slower (measured: 0.08 s with two threads vs 0.03 s with one).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(limits=1)


def _analysis_is_current(folder: Path, wanted: dict) -> bool:
    from lab.errors import LabError
    from lab.store import open_run
    from lab.store.manifest import changed_options

    try:
        run = open_run(folder)
    except LabError:
        return False
    # where a probe kept its base's part changes no row (and a copied workdir names the original's folder)
    stored, wanted = (_without_cache_dirs(o) for o in (run.manifest.get("options", {}), wanted))
    return run.complete and not changed_options(stored, wanted, only_wanted=True)


def _without_cache_dirs(options: dict) -> dict:
    probe_options = options.get("probe_options")
    if not isinstance(probe_options, dict):
        return options
    return {**options, "probe_options": {name: {k: v for k, v in values.items() if k != "cache_dir"}
                                         if isinstance(values, dict) else values
                                         for name, values in probe_options.items()}}


REPORT_STAMP = "demo-report.json"  # in WORKDIR/report: what the report there was written from


def _write_report(workdir: Path, console, reused: list[str] | None = None) -> list[Path]:
    """The report of ``workdir/results`` in ``workdir/report``: the one already there when it was
    written from the same results by the same report code (see :func:`report_stamp`; then
    ``"report"`` is added to ``reused``), else written now (HTML and PDF, or HTML alone when the PDF
    writer cannot be imported)."""
    import json

    try:
        report = importlib.import_module("lab.report")
    except ModuleNotFoundError:
        report = None
    write = getattr(report, "write_report", None)
    if write is None:
        console.print("report: skipped (lab.report.write_report is not available in this install)")
        return []
    out = workdir / "report"
    stamp = report_stamp(workdir / "results")
    try:
        before = json.loads((out / REPORT_STAMP).read_text())
    except (OSError, ValueError):
        before = None
    if isinstance(before, dict) and before.get("from") == stamp and before.get("files"):
        files = [out / name for name in before["files"]]
        if all(f.is_file() for f in files):
            if reused is not None:
                reused.append("report")
            return files
    (out / REPORT_STAMP).unlink(missing_ok=True)  # a report being rewritten is stamped only when done
    for formats in (["html", "pdf"], ["html"]):
        try:
            # its content kept in the results' report cache: `lab report` on the demo's results then skips drawing
            files = list(write(workdir / "results", out, formats, cache=True))
        except ImportError as e:  # e.g. the PDF writer's library missing: the HTML report still helps
            console.print(f"report: {', '.join(formats)} failed ({e}); trying fewer formats")
            continue
        if formats == ["html", "pdf"]:  # a fallback report is written again next time, in case the PDF works then
            (out / REPORT_STAMP).write_text(json.dumps({"from": stamp, "files": [f.name for f in files]}, indent=1) + "\n")
        return files
    return []


def report_stamp(results: Path) -> dict[str, str]:
    """What a report of ``results`` depends on, as digests: every file under ``results`` (path, size,
    modification time) and the source of lab's report and presentation packages and lab's version.
    Equal stamps: the report written then is the report that would be written now."""
    import hashlib

    import lab
    import lab.present
    import lab.report

    def digest(paths, root: Path, content: bool) -> str:
        h = hashlib.sha256()
        for path in sorted(paths):
            stat = path.stat()
            h.update(str(path.relative_to(root)).encode() + b"\0")
            h.update(path.read_bytes() if content else f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        return h.hexdigest()

    code = [Path(m.__file__).parent for m in (lab.report, lab.present)]
    # caches under results/.lab-cache are derived from the results, not inputs of the report
    inputs = [p for p in results.rglob("*") if p.is_file() and ".lab-cache" not in p.relative_to(results).parts]
    return {"results": digest(inputs, results, content=False),
            "code": digest([p for folder in code for p in folder.rglob("*.py")], code[0].parent, content=True),
            "version": str(lab.__version__)}


def print_findings(result: DemoResult, console=None) -> None:
    """Print the valley summary as a table, the report's path and the timings."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    s = result.summary
    if s is None or s.empty:
        console.print("no entanglement table in these runs (is lab.probes.entanglement installed?)")
    else:
        table = Table(title="Entanglement entropy at the row|column cut (nats; mean ± std over modules)")
        for col in ("run", "matrix", "step", "r", "S(row|col)", "ln r", "Page", "depth"):
            table.add_column(col, justify="left" if col in ("run", "matrix") else "right")
        import pandas as pd

        for row in s.itertuples(index=False):
            step = "" if pd.isna(row.step) else str(int(row.step))
            std = "" if pd.isna(row.entropy_std) else f" ± {row.entropy_std:.2f}"
            table.add_row(row.run, row.what, step, str(int(row.rank_bound)), f"{row.entropy:.3f}{std}", f"{row.ln_r:.3f}",
                          f"{row.page:.3f}", f"{row.depth:.3f}")
        console.print(table)
    for path in result.report:
        console.print(f"report: {path}")
    console.print(f"runs: {result.workdir / 'results'}  (open with lab.store.open_run or `lab report`)")
    timing = ", ".join(f"{k} {v:.0f}s" for k, v in result.seconds.items())
    cpu = ", ".join(f"{k} {v:.0f}s" for k, v in result.cpu.items())
    console.print(f"time: {timing}" + (f" (CPU of the jobs: {cpu})" if cpu else "")
                  + (f"; reused {len(result.reused)} cached step(s)" if result.reused else ""))


def default_jobs() -> int:
    """Worker processes for ``lab demo``: the cores this process may use, at most 4 (the grid has 6 runs)."""
    from lab.cores import usable_cores

    return max(1, min(4, usable_cores()))


def demo_command(
    workdir: Annotated[Optional[Path], typer.Option(help="Folder for the fine-tunes, results and report (default: the user cache dir, lab/demo).")] = None,
    steps: Annotated[Optional[int], typer.Option(help=f"Optimiser steps per fine-tune (three checkpoints are saved along the way; default {DEMO_STEPS}, --quick {QUICK['steps']}).", show_default=False)] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write the HTML/PDF report when the report module is installed.")] = True,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, show_default=False,
                                                help="Fine-tunes and analyses run at once, each in its own one-threaded process (default: the usable cores, at most 4).")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="The smallest demo, to try the command in about a minute: LoRA r = 4 and full fine-tuning, "
                                                       f"{QUICK['steps']} steps of 4 short texts, windows of 16 to 32 tokens; no MPS run, squeeze or merges. "
                                                       "Its numbers show the pipeline works, not what fine-tuning does.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars (the summary is still printed).")] = False,
) -> None:
    """Fine-tune MiniLM with LoRA (r = 4, 16, 64), fully and with MPS Adaptation (r = 64, χ = 8), squeeze
    the r = 64 LoRA to r = 16, merge the LoRA runs (stack, svd, LEGO), analyse every run, and print the
    entanglement valley."""
    from rich.console import Console

    grid = dict(QUICK) if quick else dict(mps=DEMO_MPS, squeeze=DEMO_SQUEEZE, merge=DEMO_MERGE_K)
    if quick and workdir is None:  # its own cache folder: the full demo's cached runs stay reusable
        from lab.finetune.models import default_cache_dir

        workdir = default_cache_dir() / "demo-quick"
    if steps is not None:
        grid["steps"] = steps
        grid.pop("save_every", None)  # three checkpoints of whatever number of steps
    _quiet_transformers()
    result = run_demo(workdir, report=report, progress=not quiet, jobs=jobs or default_jobs(), **grid)
    print_findings(result, Console())
