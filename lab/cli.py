"""The ``lab`` command line: a thin typer layer over the library.

User errors (``LabError``) are caught once, here: one line on stderr, exit code 2, no
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from lab.errors import LabError

app = typer.Typer(
    name="lab",
    help="What did fine-tuning do to the weights? Entanglement entropies, rank spectra and theory checks "
         "for base models, full fine-tunes and LoRA-family adapters. Results go to parquet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def user_errors(command):
    """Wrap a command so that a LabError becomes one stderr line and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except LabError as error:
            typer.echo(f"lab: error: {error}", err=True)
            raise typer.Exit(2) from None

    return wrapper


@app.command("analyze")
@user_errors
def analyze_command(
    ckpt: Annotated[list[Path], typer.Argument(
        help="Checkpoint(s) to analyse: a PEFT adapter folder, a full model folder (sharded or not, safetensors "
             "or pytorch_model.bin), a .safetensors file, a training output with checkpoint-N/ folders "
             "(analysed as a time series, each row carrying step=N), or a folder of checkpoint folders "
             "(one input each, e.g. adapters to compare).", show_default=False)],
    base: Annotated[Optional[Path], typer.Option(
        help="Base model folder. Needed for full fine-tunes (ΔW = W_ft − W_base) and DoRA's effective update; "
             "for plain adapters it checks that every targeted module exists and enables comparisons with W.")] = None,
    out: Annotated[Path, typer.Option(help="Results folder; the run is written to OUT/RUN/.")] = Path("results"),
    run: Annotated[Optional[str], typer.Option(help="Run name (default: the first checkpoint's folder name).")] = None,
    probes: Annotated[Optional[str], typer.Option(
        help="Comma-separated probes to run, or 'all' (default: the default probes; see `lab probes`). "
             "The deltas table is always written.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="A probe option, PROBE.OPTION=VALUE (repeatable), e.g. --set spectra.top_k=8; "
                      "`lab probes` lists every option. Recorded in the manifest.")] = None,
    modules: Annotated[Optional[str], typer.Option(
        help="Regular expression searched in module names to choose modules, e.g. 'self_attn\\.(q|v)_proj'.")] = None,
    controls: Annotated[bool, typer.Option(
        "--controls", help="Add seeded random matrices of every analysed shape, so plots show where 'no structure' sits.")] = False,
    targets: Annotated[Optional[str], typer.Option(
        help="What the matrix probes analyse: 'delta', 'weight' (the base weights W; needs --base) or 'delta,weight'. "
             "Sets the targets option of every probe that has one.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random controls.")] = 0,
    texts: Annotated[Optional[Path], typer.Option(
        help="Texts for probes that run the model (one per line, or .jsonl with a 'text' field); "
             "default: Python's standard-library docstrings.")] = None,
    reference_texts: Annotated[Optional[Path], typer.Option(
        "--reference-texts", help="Texts the model was not fine-tuned on (same format as --texts), for the forgetting "
                                  "probe: what fine-tuning cost the model on other text, beside --texts (sets its "
                                  "reference_texts option).")] = None,
    seq_len: Annotated[Optional[str], typer.Option(
        "--seq-len", help="Window lengths L in tokens for probes that run the model, e.g. 64,128,256 "
                          "(sets the seq_len option of every probe that has one).")] = None,
    windows: Annotated[Optional[int], typer.Option(
        "--windows", help="Number of token windows N per length for probes that run the model "
                          "(sets the windows option of every probe that has one).", min=1)] = None,
    pairs: Annotated[Optional[str], typer.Option(
        "--pairs", help="Pairs of checkpoints the pair-scope probes (no_hair) compare, FIRST:SECOND names "
                        "comma-separated, e.g. lora-r4:full (default: every pair; sets the pairs option).")] = None,
    workers: Annotated[Optional[int], typer.Option(
        help="Run on a local Dask cluster of N single-threaded worker processes.", min=1)] = None,
    scheduler: Annotated[Optional[str], typer.Option(
        help="Run on an existing Dask cluster, e.g. tcp://host:8786; its workers must see the input files at "
             "the same paths (a shared filesystem).")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Finish an interrupted run of the same name without recomputing finished units "
                         "(refused if the inputs or options changed).")] = False,
    plugin: Annotated[Optional[list[Path]], typer.Option(
        help="A Python file that registers probes of your own with lab.probes.register (repeatable); "
             "they run here and on Dask workers.")] = None,
    allow_nonfinite: Annotated[bool, typer.Option(
        "--allow-nonfinite", help="Analyse weights that hold NaN or inf instead of stopping with an error.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run folder of the same name.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary (for scripts).")] = False,
    no_base_cache: Annotated[bool, typer.Option(
        "--no-base-cache", help="Recompute what the probes derive from each base weight W (its decompositions and "
                                "singular values) for every checkpoint instead of keeping it in OUT/.lab-cache/base/ "
                                "(the rows are the same either way).")] = False,
) -> None:
    """Analyse checkpoints: read each module's update, run the probes, write parquet tables and a manifest."""
    from lab.engine.analyze import analyze
    from lab.plugins import load_plugins
    from lab.probes.options import parse_assignments
    from lab.present.run_summary import print_summary

    load_plugins(plugin or [])
    result = analyze(
        ckpt, base=base, out=out, run=run, probes=_split(probes), options=parse_assignments(set_ or []),
        modules=modules, allow_nonfinite=allow_nonfinite, overwrite=overwrite, resume=resume, controls=controls,
        targets=_split(targets), seed=seed, texts=texts, seq_len=_split(seq_len), windows=windows, pairs=_split(pairs),
        reference_texts=reference_texts, workers=workers, scheduler=scheduler, progress=not quiet,
        base_cache=not no_base_cache,
    )
    if not quiet:
        print_summary(result)


@app.command("probes")
@user_errors
def probes_command(
    plugin: Annotated[Optional[list[Path]], typer.Option(help="Also list the probes a plugin file registers.")] = None,
) -> None:
    """List the available probes: scope, the tables each writes, and their options with defaults."""
    from lab.plugins import load_plugins
    from lab.probes import available
    from lab.probes.options import describe

    load_plugins(plugin or [])
    for probe in available().values():
        default = "default" if probe.default else "opt-in"
        typer.echo(f"{probe.name:<16} {probe.scope:<7} {default:<8} tables: {', '.join(probe.tables)}")
        typer.echo(f"    {probe.description}")
        for name, type_name, value, text in describe(probe):
            typer.echo(f"    --set {probe.name}.{name}=VALUE   ({type_name}, default {value}) {text}")


@app.command("tables")
def tables_command() -> None:
    """Print every table's columns and their meanings (markdown)."""
    from lab.store.docs import tables_markdown

    typer.echo(tables_markdown(), nl=False)


@app.command("version")
def version_command() -> None:
    """Print lab's version."""
    from lab import __version__

    typer.echo(__version__)


def _split(value: Optional[str]) -> Optional[list[str]]:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _register_subsystem_commands() -> None:
    """Commands that live with their own subsystem (fine-tuning, demo, dashboard, report).

    Their modules import only typer and lab's light modules at load time, so ``lab --help`` stays fast.
    """
    from lab.demo import demo_command
    from lab.finetune.cli import finetune_command
    from lab.report.cli import report_command
    from lab.merge.cli import merge_command
    from lab.squeeze.cli import squeeze_command

    try:
        from dashboards.cli import dashboard_command
    except ImportError as error:  # lab's dashboards missing, or another package named dashboards first on the path
        _register_unavailable("dashboard", f"lab's dashboards package cannot be imported ({error}); reinstall lab "
                                           "(pip install .), or take the other package named 'dashboards' off the path")
        dashboard_command = None
    for name, command in (("finetune", finetune_command), ("demo", demo_command),
                          ("report", report_command), ("dashboard", dashboard_command),
                          ("merge", merge_command), ("squeeze", squeeze_command)):
        if command is not None:
            app.command(name)(user_errors(command))


def _register_unavailable(name: str, reason: str) -> None:
    """A command ``name`` that takes any arguments and fails with ``reason`` (one line, exit 2), so that a
    subsystem that cannot be imported costs that command only, not every other one."""

    def unavailable() -> None:
        raise LabError(reason)

    unavailable.__doc__ = "Unavailable in this installation (run it to see why)."
    app.command(name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(user_errors(unavailable))


_register_subsystem_commands()


def main() -> None:
    """Entry point of the ``lab`` console script."""
    import warnings

    # transformers 5 deprecates an attribute PEFT still reads on every adapter load: noise on a
    # newcomer's terminal, not a problem of theirs (the Python API leaves warnings alone)
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    app()


if __name__ == "__main__":
    sys.exit(main())
