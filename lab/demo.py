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
options and other options) are reused by the next ``lab demo``.
"""

from __future__ import annotations

import importlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional, Sequence

import pandas as pd
import typer

from lab.finetune.config import FinetuneConfig

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


@dataclass
class DemoResult:
    """What ``run_demo`` made: fine-tune folders and analysed runs by name, the summary table,
    the report files, and seconds per phase."""

    workdir: Path
    finetunes: dict[str, Path] = field(default_factory=dict)
    runs: dict[str, object] = field(default_factory=dict)  # name -> lab.store.Run
    summary: pd.DataFrame | None = None
    report: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
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
             merge: int | None = None, windows: dict | None = None) -> DemoResult:
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
    """
    from rich.console import Console

    from lab.finetune.models import default_cache_dir

    console = console or Console(stderr=True, quiet=not progress)
    workdir = Path(workdir) if workdir is not None else default_cache_dir() / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    result = DemoResult(workdir=workdir)
    configs = demo_configs(workdir, ranks=ranks, full=full, steps=steps, save_every=save_every,
                           batch_size=batch_size, max_length=max_length, seed=seed, mps=mps)
    t0 = time.perf_counter()
    retrained = _finetune_all(configs, result, console, progress)
    if squeeze is not None:
        retrained |= _squeeze(configs, retrained, squeeze, result)
    result.seconds["finetune"] = round(time.perf_counter() - t0, 1)

    t1 = time.perf_counter()
    _analyze_all(configs, retrained, probes, result, console, progress, windows or DEMO_WINDOWS)
    result.seconds["analyze"] = round(time.perf_counter() - t1, 1)
    if merge is not None:
        t3 = time.perf_counter()
        _merge_all(configs, retrained, merge, result)
        result.seconds["merge"] = round(time.perf_counter() - t3, 1)

    result.summary = valley_summary(list(result.runs.values()))
    result.summary.to_csv(workdir / "summary.csv", index=False)
    if report:
        t2 = time.perf_counter()
        result.report = _write_report(workdir, console)
        result.seconds["report"] = round(time.perf_counter() - t2, 1)
    result.seconds["total"] = round(time.perf_counter() - t0, 1)
    return result


def _finetune_all(configs: dict[str, FinetuneConfig], result: DemoResult, console, progress: bool) -> set[str]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lab.finetune.train import finetune, is_complete

    retrained = set()
    with Progress(TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                  TimeElapsedColumn(), console=console, disable=not progress) as bar:
        for name, config in configs.items():
            result.finetunes[name] = Path(config.out)
            if is_complete(config.out, config):
                bar.add_task(f"fine-tune {name}", total=config.steps, completed=config.steps, note="cached")
                result.reused.append(f"finetune:{name}")
                continue
            task = bar.add_task(f"fine-tune {name}", total=config.steps, note="")
            finetune(config, overwrite=True,
                     on_step=lambda step, loss, task=task: bar.update(task, completed=step, note=f"loss {loss:.4f}"))
            retrained.add(name)
    return retrained


def _squeeze(configs: dict[str, FinetuneConfig], retrained: set[str], squeeze: tuple[int, int], result: DemoResult) -> set[str]:
    """Squeeze the last checkpoint of ``lora-r{r_from}`` to rank k into ``finetunes/squeeze-r{k}``
    (redone when its source was retrained or its output is missing); the table to ``squeezes/``."""
    from lab.errors import InputError
    from lab.squeeze.api import squeeze as run_squeeze

    r_from, k = squeeze
    source = f"lora-r{r_from}"
    if source not in configs:
        raise InputError(f"the demo squeezes {source}, which is not in the grid; add rank {r_from}")
    config = configs[source]
    name = f"squeeze-r{k}"
    out = result.workdir / "finetunes" / name
    result.finetunes[name] = out
    configs[name] = config  # analysed like the others: its modules and base are the source's
    if source not in retrained and (out / "adapter_model.safetensors").is_file():
        result.reused.append(f"squeeze:{name}")
        return set()
    last = max(Path(config.out).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    run_squeeze(last, out, rank=k, results=result.workdir / "squeezes", run="squeezes", overwrite=True)
    return {name}


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


def _analyze_all(configs: dict[str, FinetuneConfig], retrained: set[str], probes: Sequence[str], result: DemoResult,
                 console, progress: bool, windows: dict) -> None:
    import lab
    from lab.probes.registry import resolve
    from lab.store import open_run
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from lab.finetune.models import minilm_path

    import json

    from lab.probes.options import as_json, build_options

    base = minilm_path()
    # each run alone: pair-scope probes (no_hair) would compare a run's own checkpoints, at the
    # default window sizes; the demo's LoRA-vs-full comparison is analyses/no_hair.py, across runs
    chosen = [p for p in resolve(list(probes)) if p.scope != "pair"]
    # every probe that runs the model on text gets the demo's window sizes (its options have both fields)
    options = {p.name: dict(windows) for p in chosen
               if p.options is not None and {"seq_len", "windows"} <= set(getattr(p.options, "__dataclass_fields__", {}))}
    if "attention" in options:
        options["attention"]["token_cuts"] = DEMO_TOKEN_CUTS
    # every option of every probe, as the manifest records them: an analysis made with other probe
    # options (the demo's sizes changed by an upgrade, say) is redone, not reused
    built = build_options(chosen, options)
    probe_options = json.loads(json.dumps({p.name: as_json(built[p.name]) for p in chosen}, default=str))
    wanted = {"probes": [p.name for p in chosen], "probe_options": probe_options, "controls": True,
              "modules": DEMO_MODULES, "base": str(base.resolve())}
    results_dir = result.workdir / "results"
    with Progress(SpinnerColumn(finished_text="✓"), TextColumn("{task.description:<18}"), TextColumn("{task.fields[note]}"),
                  TimeElapsedColumn(), console=console, disable=not progress) as bar:
        for name, config in configs.items():
            folder = results_dir / name
            path = result.finetunes[name]
            if name not in retrained and _analysis_is_current(folder, wanted):
                bar.add_task(f"analyze {name}", total=1, completed=1, note="cached")
                result.runs[name] = open_run(folder)
                result.reused.append(f"analyze:{name}")
                continue
            task = bar.add_task(f"analyze {name}", total=None, note=", ".join(wanted["probes"]))
            with one_blas_thread():
                result.runs[name] = lab.analyze(path, base=base, out=results_dir, run=name, probes=wanted["probes"],
                                                options=options, modules=DEMO_MODULES, controls=True, overwrite=True,
                                                progress=False)
            bar.update(task, total=1, completed=1)


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

    try:
        run = open_run(folder)
    except LabError:
        return False
    options = run.manifest.get("options", {})
    return run.complete and all(options.get(k) == v for k, v in wanted.items())


def valley_summary(runs: Sequence) -> pd.DataFrame:
    """Per run and step: the entanglement entropy at the row|column cut averaged over modules (with
    its spread), next to ln r and Page's value for that cut, and the same for the run's random
    controls (a Gaussian matrix, and a product of Gaussian factors of rank r).

    Empty when no run has the ``entanglement_summary`` table.
    """
    frames = []
    for run in runs:
        if "entanglement_summary" not in run.tables():
            continue
        t = run.table("entanglement_summary", columns=["run", "checkpoint", "step", "source", "rank_bound", "valley_entropy",
                                                        "valley_page_entropy", "valley_depth"])
        frames.append(t)
    if not frames:
        return pd.DataFrame()
    t = pd.concat(frames, ignore_index=True)
    t["step"] = t["step"].astype("Int64")
    # controls carry no step; label them by what they are
    t["what"] = t["source"].map({"delta": "ΔW", "random": "random Gaussian", "random_lora": "random B·A"}).fillna(t["source"])
    out = (t.groupby(["run", "what", "step", "rank_bound"], dropna=False, sort=False)
             .agg(modules=("valley_entropy", "size"), entropy=("valley_entropy", "mean"), entropy_std=("valley_entropy", "std"),
                  page=("valley_page_entropy", "mean"), depth=("valley_depth", "mean"))
             .reset_index())
    out["ln_r"] = out["rank_bound"].map(lambda r: math.log(r) if r and r > 0 else float("nan"))
    return out[["run", "what", "step", "rank_bound", "modules", "entropy", "entropy_std", "ln_r", "page", "depth"]]


def _write_report(workdir: Path, console) -> list[Path]:
    try:
        report = importlib.import_module("lab.report")
    except ModuleNotFoundError:
        report = None
    write = getattr(report, "write_report", None)
    if write is None:
        console.print("report: skipped (lab.report.write_report is not available in this install)")
        return []
    for formats in (["html", "pdf"], ["html"]):
        try:
            return list(write(workdir / "results", workdir / "report", formats))
        except ImportError as e:  # e.g. the PDF writer's library missing: the HTML report still helps
            console.print(f"report: {', '.join(formats)} failed ({e}); trying fewer formats")
    return []


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
    console.print(f"time: {timing}" + (f"; reused {len(result.reused)} cached step(s)" if result.reused else ""))


def demo_command(
    workdir: Annotated[Optional[Path], typer.Option(help="Folder for the fine-tunes, results and report (default: the user cache dir, lab/demo).")] = None,
    steps: Annotated[int, typer.Option(help="Optimiser steps per fine-tune (three checkpoints are saved along the way).")] = DEMO_STEPS,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write the HTML/PDF report when the report module is installed.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars (the summary is still printed).")] = False,
) -> None:
    """Fine-tune MiniLM with LoRA (r = 4, 16, 64), fully and with MPS Adaptation (r = 64, χ = 8), squeeze
    the r = 64 LoRA to r = 16, merge the LoRA runs (stack, svd, LEGO), analyse every run, and print the
    entanglement valley."""
    from rich.console import Console

    result = run_demo(workdir, steps=steps, report=report, progress=not quiet, mps=DEMO_MPS, squeeze=DEMO_SQUEEZE,
                      merge=DEMO_MERGE_K)
    print_findings(result, Console())
