"""`lab.analyze`: read checkpoints, map the probes over their deltas, store the rows.

The CLI's ``lab analyze`` is a thin wrapper around :func:`analyze`, so notebooks and the
scripts in ``analyses/`` run exactly what the command runs.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable, Sequence

from lab.checkpoints import Checkpoint, discover, iter_deltas
from lab.errors import InputError, LabError
from lab.probes.registry import Probe, ProbeContext, resolve
from lab.store import Run, RunWriter
from lab.store.manifest import describe_file, versions

TARGETS = ("delta", "weight")
UNCHANGED = "unchanged: ΔW = 0, other probes skipped"


def analyze(
    ckpts: str | Path | Sequence[str | Path],
    *,
    base: str | Path | None = None,
    out: str | Path = "results",
    run: str | None = None,
    probes: Sequence[str] | None = None,
    modules: str | None = None,
    allow_nonfinite: bool = False,
    overwrite: bool = False,
    controls: bool = False,
    targets: Sequence[str] = ("delta",),
    seed: int = 0,
    progress: bool = True,
) -> Run:
    """Analyse checkpoints and return the stored run.

    Parameters
    ----------
    ckpts : one path or several: a PEFT adapter folder, a full model folder (sharded or not),
        a ``.safetensors`` file, or a training output with ``checkpoint-N/`` folders (a time series).
    base : the base model folder; needed for full checkpoints (ΔW = W_ft − W_base), DoRA's
        effective update, and anything that compares ΔW with W.
    out, run : results go to ``out/run/`` (``run`` defaults to the first checkpoint's name).
    probes : probe names (see ``lab.probes.available()``); ``None`` runs the default ones,
        ``["all"]`` every registered probe. The ``deltas`` table is always written.
    modules : a regular expression searched in each module name to select modules.
    allow_nonfinite : analyse weights holding NaN/inf instead of refusing them.
    overwrite : replace an existing run folder of the same name.
    controls : add seeded random matrices of every analysed shape (``source = random``).
    targets : ``"delta"`` and/or ``"weight"`` (the base weight W itself; needs ``base``).
    seed : seed of the random controls.
    progress : show progress bars on stderr.

    Examples
    --------
    >>> run = lab.analyze("my-lora/", base="base-model/", out="results")   # doctest: +SKIP
    >>> run.table("deltas").groupby("role").fro_norm.mean()                 # doctest: +SKIP
    """
    paths = [Path(ckpts)] if isinstance(ckpts, (str, Path)) else [Path(p) for p in ckpts]
    if not paths:
        raise InputError("no checkpoint given")
    chosen = resolve(probes)
    _check_options(modules, targets, base)
    checkpoints = [c for p in paths for c in discover(p)]  # validates every input before any work
    base_files = _base_files(base)
    name = run or _default_run_name(paths)

    writer = RunWriter(Path(out), name, overwrite=overwrite)
    ctx = ProbeContext(seed=seed, targets=tuple(targets), controls=controls)
    options = {
        "base": str(Path(base).resolve()) if base else None, "probes": [p.name for p in chosen],
        "modules": modules, "allow_nonfinite": allow_nonfinite, "controls": controls,
        "targets": list(targets), "seed": seed,
    }
    try:
        writer.update_manifest(
            inputs=_describe_inputs(checkpoints, base_files), options=options, versions=versions()
        )
        shapes: set[tuple[int, int, int]] = set()
        with _progress(progress) as bar:
            for ckpt in checkpoints:
                _analyze_checkpoint(ckpt, base, chosen, ctx, writer, name, modules, allow_nonfinite, shapes, bar)
        if controls:
            _add_controls(chosen, shapes, ctx, writer, name)
        writer.finish()
    except BaseException as error:  # also KeyboardInterrupt: never leave a run looking complete
        writer.fail(error)
        raise
    return Run(writer.folder)


def _analyze_checkpoint(ckpt: Checkpoint, base, chosen: list[Probe], ctx: ProbeContext, writer: RunWriter,
                        run: str, modules: str | None, allow_nonfinite: bool,
                        shapes: set[tuple[int, int, int]], bar) -> None:
    deltas_probe = next(p for p in chosen if p.name == "deltas")
    task = bar.add_task(ckpt.name, total=None) if bar else None
    count = 0
    for delta in iter_deltas(ckpt, base, modules=modules, allow_nonfinite=allow_nonfinite):
        ids = {"run": run, "checkpoint": ckpt.name, "step": ckpt.step, "module": delta.module,
               "layer": delta.layer, "role": delta.role}
        if delta.fro_norm() == 0.0:
            # an untouched module (a full fine-tune of some modules, PEFT's B = 0 at init): say so
            # in the deltas table instead of filling the other tables with undefined entropies
            delta.note = "; ".join(filter(None, [delta.note, UNCHANGED]))
            _add_rows(writer, deltas_probe.run(delta, ctx), ids)
        else:
            for probe in chosen:
                _add_rows(writer, probe.run(delta, ctx), ids)
            shapes.add((delta.shape[0], delta.shape[1], delta.rank_bound))
        count += 1
        if bar:
            bar.update(task, advance=1, description=f"{ckpt.name}: {delta.module}")
    if count == 0:
        what = f" matching --modules {modules!r}" if modules else ""
        raise InputError(f"{ckpt.path}: no 2-D weight updates{what} to analyse")
    if bar:
        bar.update(task, total=count, completed=count, description=f"{ckpt.name}: {count} modules")


def _add_controls(chosen: list[Probe], shapes, ctx: ProbeContext, writer: RunWriter, run: str) -> None:
    ids = {"run": run, "checkpoint": "controls", "step": None, "layer": None, "role": "random"}
    for probe in chosen:
        if probe.controls is not None:
            _add_rows(writer, probe.controls(sorted(shapes), ctx), ids)


def _add_rows(writer: RunWriter, rows_by_table: dict[str, list[dict[str, Any]]], ids: dict[str, Any]) -> None:
    for table, rows in rows_by_table.items():
        writer.add(table, ({**ids, **row} for row in rows))  # a probe's own id values win (controls)


def _check_options(modules: str | None, targets: Iterable[str], base) -> None:
    if modules is not None:
        try:
            re.compile(modules)
        except re.error as e:
            raise LabError(f"--modules {modules!r} is not a valid regular expression: {e}") from None
    bad = [t for t in targets if t not in TARGETS]
    if bad:
        raise LabError(f"unknown target(s) {', '.join(bad)}; choose from {', '.join(TARGETS)}")
    if "weight" in targets and base is None:
        raise LabError("--targets weight analyses the base weights W and needs --base BASE")


def _base_files(base) -> list[Path]:
    if base is None:
        return []
    found = discover(base)
    if len(found) != 1 or found[0].format != "full":
        raise InputError(f"{base}: --base must be one full model (a folder with safetensors/bin weights or a .safetensors file)")
    return found[0].files


def _describe_inputs(checkpoints: list[Checkpoint], base_files: list[Path]) -> dict[str, Any]:
    return {
        "checkpoints": [
            {"name": c.name, "step": c.step, "format": c.format, "path": str(c.path.resolve()),
             "files": [describe_file(f) for f in c.files]}
            for c in checkpoints
        ],
        "base": [describe_file(f) for f in base_files],
    }


def _default_run_name(paths: list[Path]) -> str:
    first = paths[0].resolve()
    stem = first.stem if first.suffix == ".safetensors" else first.name
    return stem if len(paths) == 1 else f"{stem}+{len(paths) - 1}"


def _progress(enabled: bool):
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=False)
