"""``lab dashboard``: serve the Streamlit app of this package over a results folder.

The command lives with the app it serves, as ``lab report``'s lives in ``lab/report/cli.py``; ``lab``
registers it (:mod:`lab.cli`). The package is shipped with lab, so this works after a normal install as
well as an editable one; the app never imports this module. It binds to 127.0.0.1 unless ``--host``
says otherwise: results name local files and should not be served to the network by default.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from dashboards import APP, RESULTS_ENV
from lab.errors import InputError, LabError


def app_path() -> Path:
    """The Streamlit entry script, ``dashboards/app.py``, wherever lab is installed."""
    if not APP.is_file():
        raise LabError(f"{APP}: missing from lab's dashboards package; reinstall lab (pip install .)")
    return APP


def streamlit_argv(results_dir: Path, host: str, port: int) -> list[str]:
    """The command line that serves the app: headless, no usage statistics, no file watching."""
    return [
        sys.executable, "-m", "streamlit", "run", str(app_path()),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--server.fileWatcherType", "none", "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false", "--global.developmentMode", "false",
        "--", str(results_dir),
    ]


def dashboard_command(
    results_dir: Annotated[Path, typer.Argument(
        help="Results folder written by `lab analyze` (holding one folder per run), or a single run folder.")] = Path("results"),
    port: Annotated[int, typer.Option(help="TCP port to serve on.", min=1, max=65535)] = 8501,
    host: Annotated[str, typer.Option(
        help="Address to bind. The default serves this machine only; use 0.0.0.0 to share on the network.")] = "127.0.0.1",
) -> None:
    """Open the interactive dashboard over RESULTS_DIR (runs, entanglement, spectra, ...) in a browser."""
    results_dir = results_dir.resolve()
    if not results_dir.is_dir():
        raise InputError(f"{results_dir}: no such results folder; run `lab analyze ... --out {results_dir}` first")
    argv = streamlit_argv(results_dir, host, port)
    typer.echo(f"lab dashboard: serving {results_dir} at http://{host}:{port}  (Ctrl-C to stop)", err=True)
    env = {**os.environ, RESULTS_ENV: str(results_dir)}
    if os.name == "posix":  # become the server: signals and exit codes reach Streamlit directly
        os.execve(sys.executable, argv, env)
    import subprocess

    raise typer.Exit(subprocess.call(argv, env=env))
