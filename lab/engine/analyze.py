"""`lab.analyze`: plan the units, run them (serially or on Dask), store the rows, resumably.

The CLI's ``lab analyze`` is a thin wrapper around :func:`analyze`, so notebooks and the
scripts in ``analyses/`` run exactly what the command runs.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

from lab.checkpoints import Base, Checkpoint, discover, open_base
from lab.checkpoints.module_delta import STREAM_BYTES
from lab.engine.basecache import cache_for
from lab.engine.execute import Work
from lab.engine.executors import DaskExecutor, SerialExecutor
from lab.engine.plan import Plan, build_plan
from lab.engine.progress import progress_bar
from lab.errors import InputError, LabError
from lab.probes.options import as_json, build_options
from lab.probes.registry import Probe, ProbeContext, reporting_steps, resolve
from lab.store import Run, RunWriter
from lab.plugins import loaded as loaded_plugins
from lab.store.manifest import as_stored, changed_options, describe_file, describe_files, read_manifest, versions


class ResumeError(LabError):
    """``--resume`` of a run whose inputs or options differ from what its manifest recorded."""


def analyze(
    ckpts: str | Path | Sequence[str | Path],
    *,
    base: str | Path | None = None,
    out: str | Path = "results",
    run: str | None = None,
    probes: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
    modules: str | None = None,
    allow_nonfinite: bool = False,
    overwrite: bool = False,
    resume: bool = False,
    controls: bool = False,
    targets: Sequence[str] | None = None,
    seed: int = 0,
    texts: str | Path | None = None,
    seq_len: Sequence[int] | None = None,
    windows: int | None = None,
    pairs: Sequence[str] | None = None,
    reference_texts: str | Path | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    stream_bytes: int | None = STREAM_BYTES,
    progress: bool = True,
    base_cache: bool = True,
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
    options : per-probe options, ``{"spectra": {"top_k": 8}}`` or options objects; recorded in
        the manifest. ``targets`` sets the ``targets`` option of every probe that has one.
    modules : a regular expression searched in each module name to select modules.
    allow_nonfinite : analyse weights holding NaN/inf instead of refusing them.
    overwrite : replace an existing run folder of the same name.
    resume : finish an interrupted run of the same name without recomputing its finished units;
        refused when the inputs' hashes or the options differ from its manifest.
    controls : add seeded random matrices of every analysed shape (``source = random``).
    targets : ``"delta"`` and/or ``"weight"`` (the base weight W itself; needs ``base``).
    seed : seed of the random controls.
    texts : a texts file for model-scope probes (one per line, or .jsonl with "text"); default: the
        standard-library docstrings the fine-tuner uses.
    seq_len, windows : window lengths L and number of windows N of the probes that run the model on
        text (attention, thresholds); set on every probe with that option unless its options set it.
    pairs : ``FIRST:SECOND`` checkpoint names for the pair-scope probes (no_hair); default every pair.
    reference_texts : a texts file the model was not fine-tuned on, for the probes that compare ``texts``
        with other text (forgetting: what was forgotten); sets their ``reference_texts`` option.
    workers, scheduler : run on Dask: ``workers`` local single-threaded worker processes, or an
        existing cluster at ``scheduler`` (``tcp://host:8786``) that sees the same files.
    stream_bytes : dense updates larger than this (float64 bytes) are read in blocks, never whole.
    progress : show a progress bar on stderr.
    base_cache : keep what the probes compute about each base weight W (its decompositions, singular
        values) in ``out/.lab-cache/base/``, addressed by the base file's sha256 and the tensor, so the
        checkpoints of a sweep, a resumed run, Dask workers and later runs into ``out`` decompose each W
        once (:mod:`lab.engine.basecache`); the rows are the same either way.

    Examples
    --------
    >>> run = lab.analyze("my-lora/", base="base-model/", out="results")   # doctest: +SKIP
    >>> run.table("deltas").groupby("role").fro_norm.mean()                 # doctest: +SKIP
    """
    paths = [Path(ckpts)] if isinstance(ckpts, (str, Path)) else [Path(p) for p in ckpts]
    if not paths:
        raise InputError("no checkpoint given")
    if workers is not None and scheduler is not None:
        raise LabError("pass either --workers N (a local cluster) or --scheduler ADDRESS (an existing one), not both")
    chosen = resolve(probes)
    probe_options = build_options(chosen, _with_shared(chosen, options, {
        "targets": tuple(targets) if targets is not None else None,
        "seq_len": tuple(seq_len) if seq_len is not None else None, "windows": windows,
        "pairs": tuple(pairs) if pairs is not None else None,
        "reference_texts": str(Path(reference_texts).resolve()) if reference_texts is not None else None}))
    _check_targets(probe_options, base)
    if reference_texts is not None and not any(getattr(o, "reference_texts", "") for o in probe_options.values()):
        raise InputError(f"--reference-texts {reference_texts}: none of the chosen probes reads reference texts; add "
                         "forgetting to --probes")
    reference = next((o.reference_texts for o in probe_options.values() if getattr(o, "reference_texts", "")), None)
    executor = DaskExecutor(workers, scheduler) if (workers or scheduler) else SerialExecutor()
    with _terminate_as_interrupt():  # SIGTERM from here on ends the run as Ctrl-C does, cluster closed
        executor.start()  # a local cluster's workers start, and import lab, while the inputs are read and planned
        try:
            checkpoints = [c for p in paths for c in discover(p)]  # validates (and indexes) every input before any work
            _check_names(checkpoints)
            _check_pairs(probe_options, checkpoints)
            base_model = open_base(base) if base is not None else None
            corpus = str(Path(texts).resolve()) if texts is not None else None
            if corpus is not None and not Path(corpus).is_file():
                raise InputError(f"{texts}: no such texts file (--texts)")
            plan = build_plan(checkpoints, base_model, chosen, modules=modules, allow_nonfinite=allow_nonfinite,
                              controls=controls, seed=seed, stream_bytes=stream_bytes, corpus=corpus)
            name = run or _default_run_name(paths)
            settings = {
                "base": str(base_model.path.resolve()) if base_model is not None else None, "probes": [p.name for p in chosen],
                "probe_options": {p.name: as_json(probe_options[p.name]) for p in chosen},
                "modules": modules, "allow_nonfinite": allow_nonfinite, "controls": controls, "seed": seed,
                "corpus": corpus, "stream_bytes": stream_bytes,
                **({"reference_texts": str(Path(reference).resolve())} if reference else {}),
            }
            inputs = _describe_inputs(checkpoints, base_model, corpus)
            if reference:  # its size and sha256 beside the corpus's, so a resume with other reference texts is refused
                inputs["reference_texts"] = describe_file(Path(reference))
            if resume:
                folder = Path(out) / name
                if _finished(folder):
                    _check_resumable(folder, inputs, settings)
                    return Run(folder)
            writer = RunWriter(Path(out), name, overwrite=overwrite, resume=resume)
            if resume:
                _check_resumable(writer.folder, inputs, settings)
            cache = cache_for(Path(out), inputs["base"], stream_bytes) if base_cache and base_model is not None else None
            work = Work(name, tuple(chosen), probe_options, ProbeContext(seed=seed), base_cache=cache)
            try:
                writer.update_manifest(inputs=inputs, options=settings, versions=versions(),
                                       plugins=[describe_file(p) for p in loaded_plugins()],
                                       plan=plan.counts(), execution=executor.name,
                                       base_cache=cache.folder if cache is not None else None)
                _execute(plan, work, executor, writer, progress)
                writer.finish(plan.keys)
            except BaseException as error:  # also KeyboardInterrupt/SIGTERM: never leave a run looking complete
                writer.fail(error)
                raise
            return Run(writer.folder)
        finally:
            executor.close()  # also when reading or planning the inputs failed


def _execute(plan: Plan, work: Work, executor, writer: RunWriter, progress: bool) -> None:
    done = writer.parts.done()
    todo = [u for u in plan.units if u.key not in done]
    with progress_bar(len(plan.units), len(plan.units) - len(todo), enabled=progress) as bar:
        if not todo:
            return
        with executor, reporting_steps(bar.step):  # steps inside units run here (serial); workers report none
            for result in executor.run(todo, work, plan.prepare):
                writer.add_unit(result.key, result.rows, label=result.label, seconds=round(result.seconds, 4),
                                worker=result.worker, cpu_seconds=_rounded(result.cpu_seconds),
                                **({"base_cache": result.base_cache} if result.base_cache else {}))
                bar.advance(result.label)


def _rounded(seconds: float | None) -> float | None:
    return round(seconds, 4) if seconds is not None else None


def _with_shared(chosen: list[Probe], options: Mapping[str, Any] | None, shared: Mapping[str, Any]) -> dict:
    """``options`` with each ``shared`` value (those not None) set on every probe that has that option.

    A value the probe's own options already give (``--set attention.seq_len=…``) wins over the shared
    one, so ``--targets``, ``--seq-len`` and ``--windows`` are conveniences, never overrides.
    """
    import dataclasses

    out = dict(options or {})
    for key, value in shared.items():
        if value is None:
            continue
        for p in chosen:
            if key in {f.name for f in dataclasses.fields(p.options)}:
                given = out.get(p.name)
                if given is None:
                    out[p.name] = {key: value}
                elif isinstance(given, Mapping) and key not in given:
                    out[p.name] = {**given, key: value}
    return out


def _check_targets(probe_options: dict[str, Any], base) -> None:
    wants_weight = any("weight" in getattr(o, "targets", ()) for o in probe_options.values())
    if wants_weight and base is None:
        raise LabError("--targets weight analyses the base weights W and needs --base BASE")


def _check_pairs(probe_options: dict[str, Any], checkpoints: list[Checkpoint]) -> None:
    """Every name in a pair-scope probe's ``pairs`` option is one of the inputs' names: a misspelt
    name would otherwise select no pair and the run would end with no rows for that probe."""
    names = {c.name for c in checkpoints}
    for probe, options in probe_options.items():
        for pair in getattr(options, "pairs", ()) or ():
            unknown = [n for n in pair.split(":") if n not in names]
            if unknown:
                raise InputError(f"--pairs {pair}: no input checkpoint is named {unknown[0]!r} ({probe}); the "
                                 f"inputs are {', '.join(sorted(names))}")


def _check_names(checkpoints: list[Checkpoint]) -> None:
    """Give inputs that share a name (``a/checkpoint-30``, ``b/checkpoint-30``) their parent folder
    as a prefix, so rows tell them apart; the same path given twice is an error."""
    paths: dict[Path, Checkpoint] = {}
    for c in checkpoints:
        if c.path.resolve() in paths:
            raise InputError(f"{c.path}: the same checkpoint is given twice")
        paths[c.path.resolve()] = c
    names = [c.name for c in checkpoints]
    for c in checkpoints:
        if names.count(c.name) > 1:
            c.name = f"{c.path.resolve().parent.name}/{c.name}"
    clash = sorted({c.name for c in checkpoints if [d.name for d in checkpoints].count(c.name) > 1})
    if clash:
        raise InputError(f"several inputs are named {clash[0]!r} even with their parent folder; rename one folder "
                         "so the rows can tell them apart")


def _describe_inputs(checkpoints: list[Checkpoint], base: Base | None, corpus: str | None) -> dict[str, Any]:
    files = [f for c in checkpoints for f in c.files] + (list(base.files) if base is not None else [])
    files += [Path(corpus)] if corpus else []
    described = iter(describe_files(files))  # every input hashed side by side, then handed out in this order
    return {
        "checkpoints": [
            {"name": c.name, "step": c.step, "format": c.format, "path": str(c.path.resolve()),
             "files": [next(described) for _ in c.files], **({"metadata": c.metadata} if c.metadata else {}),
             **({"hub": c.hub} if c.hub else {})}
            for c in checkpoints
        ],
        "base": [next(described) for _ in base.files] if base is not None else [],
        **({"base_hub": base.hub} if base is not None and base.hub else {}),
        "corpus": next(described) if corpus else None,
    }


def _finished(folder: Path) -> bool:
    try:
        return read_manifest(folder).get("status") == "complete"
    except (OSError, ValueError):
        return False


def _check_resumable(folder: Path, inputs: dict[str, Any], settings: dict[str, Any]) -> None:
    """ResumeError unless the run folder was made from the same inputs (hashes) with the same options."""
    manifest = read_manifest(folder)
    changed = changed_options(manifest.get("options", {}), settings)
    if changed:
        raise ResumeError(f"{folder}: cannot resume: options differ from the interrupted run's ({', '.join(changed)}); "
                          "rerun with the same options, or --overwrite to start again")
    if manifest.get("inputs") != as_stored(inputs):
        raise ResumeError(f"{folder}: cannot resume: the input files differ from the interrupted run's (sizes or sha256); "
                          "pass --overwrite to start again")


def _default_run_name(paths: list[Path]) -> str:
    first = paths[0].resolve()
    stem = first.stem if first.suffix == ".safetensors" else first.name
    return stem if len(paths) == 1 else f"{stem}+{len(paths) - 1}"


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM raises KeyboardInterrupt while a run is going (main thread only), so it ends as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
