"""``lab dashboard``: the Streamlit command line it runs (bound to 127.0.0.1 unless --host), user
errors before anything starts, and the app shipped inside a normal (non-editable) wheel, without
the developer tools.

The user-error cases run ``lab`` in a process of its own: on success the command replaces its
process with Streamlit (``os.execve``), so a regressed check run in-process would replace pytest
itself and the run would vanish instead of failing.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dashboards
from dashboards.cli import app_path, streamlit_argv

ROOT = Path(__file__).parents[2]


def lab(*args):
    from lab.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def lab_process(*args, timeout=60):
    """``python -m lab.cli ARGS`` in its own process group; its result, or a test failure (the group
    killed) when it is still running after ``timeout`` seconds, i.e. it started serving."""
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"lab {' '.join(map(str, args))} was still running after {timeout} s (it started Streamlit "
                    f"instead of refusing):\n{err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def option(argv, name):
    return argv[argv.index(name) + 1]


def test_streamlit_runs_the_packaged_app_on_localhost_by_default(tmp_path):
    argv = streamlit_argv(tmp_path, "127.0.0.1", 8765)
    assert argv[1:4] == ["-m", "streamlit", "run"]
    assert Path(argv[4]) == app_path() == Path(dashboards.__file__).with_name("app.py")
    assert option(argv, "--server.address") == "127.0.0.1"
    assert option(argv, "--server.port") == "8765"
    assert option(argv, "--server.headless") == "true"
    assert option(argv, "--browser.gatherUsageStats") == "false"
    assert argv[-2:] == ["--", str(tmp_path)]
    assert option(streamlit_argv(tmp_path, "0.0.0.0", 80), "--server.address") == "0.0.0.0"


def test_help_shows_the_defaults():
    out = lab("dashboard", "--help").output
    assert "--port" in out and "--host" in out and "127.0.0.1" in out and "8501" in out


def test_missing_results_folder_is_a_user_error(tmp_path):
    result = lab_process("dashboard", tmp_path / "nowhere")
    assert result.returncode == 2, result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert lines == [f"lab: error: {tmp_path / 'nowhere'}: no such results folder; run `lab analyze ... --out "
                     f"{tmp_path / 'nowhere'}` first"]
    assert "serving" not in result.stderr and "Streamlit" not in result.stdout + result.stderr


@pytest.mark.parametrize("port, bound", [("70000", "65535"), ("0", "1"), ("-1", "1")])
def test_bad_port_is_refused(tmp_path, port, bound):
    result = lab_process("dashboard", tmp_path, "--port", port)
    assert result.returncode == 2, result.stderr
    text = " ".join(result.stderr.replace("│", " ").split())  # typer draws the usage error in a box
    # the wording of the range varies between typer/click versions; the option and the bound it broke do not
    message = re.search(r"Invalid value for '--port': (.*?)(?:╰|$)", text)
    assert message and re.search(rf"(?<![\d-]){bound}(?!\d)", message.group(1)), result.stderr
    assert "serving" not in result.stderr


def _setuptools_ok():
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 68


def test_a_normal_wheel_ships_the_app_and_templates(tmp_path):
    source = tmp_path / "source"  # build from a copy, so no build/ or egg-info lands in the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("lab", "dashboards", "tools"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for file in ("pyproject.toml", "README.md"):
        if (ROOT / file).exists():
            shutil.copy(ROOT / file, source / file)
    # With setuptools >= 68 here, build with it; else (a fresh venv of Python 3.11 has 65) let pip
    # provide pyproject's build requirements as `pip install -e .` itself did.
    isolation = ["--no-build-isolation"] if _setuptools_ok() else []
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(tmp_path), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("lab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    views = {p.name for p in (ROOT / "dashboards" / "views").glob("*.py")}
    assert {"dashboards/app.py", "dashboards/data.py", "dashboards/navigation.py", "dashboards/cli.py",
            "lab/present/figures/entanglement.py", "lab/report/templates/report.html.j2"} <= names
    assert {f"dashboards/views/{v}" for v in views} <= names
    assert not [n for n in names if n.startswith("tools/") or n.endswith(("browser.py", "screenshots.py"))]
    # Import from the unpacked wheel with site's .pth files off (so the editable checkout cannot answer):
    # the app and the template are found inside the installed tree.
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    site_packages = next(p for p in sys.path if p.endswith("site-packages"))
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]];"
            "from dashboards.cli import app_path; from lab.report.html import environment;"
            "environment().get_template('report.html.j2'); print(app_path())")
    out = subprocess.run([sys.executable, "-S", "-c", code, str(unpacked), site_packages],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == unpacked / "dashboards" / "app.py"


def test_a_package_named_dashboards_first_on_the_path_costs_only_the_dashboard_command(tmp_path):
    """``python -m lab.cli`` run in a folder holding some other ``dashboards`` package (a common folder
    name): that package shadows lab's, ``lab dashboard`` says so in one line, every other command works."""
    (tmp_path / "dashboards").mkdir()
    (tmp_path / "dashboards" / "__init__.py").write_text("")
    run = lambda *args: subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True,
                                       cwd=tmp_path, timeout=120)
    refused = run("dashboard", "results", "--port", "9999")
    assert refused.returncode == 2, refused.stderr
    lines = [l for l in refused.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "dashboards package cannot be imported" in lines[0] and "Traceback" not in refused.stderr
    listed = run("probes")
    assert listed.returncode == 0, listed.stderr
    assert "entanglement" in listed.stdout
