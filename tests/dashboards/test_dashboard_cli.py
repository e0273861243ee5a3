"""``lab dashboard``: the Streamlit command line it runs (bound to 127.0.0.1 unless --host), user
errors before anything starts, and the app shipped inside a normal (non-editable) wheel, without
the developer tools."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dashboards
from lab.dashboard_cli import app_path, streamlit_argv

ROOT = Path(__file__).parents[2]


def lab(*args):
    from lab.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


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
    result = lab("dashboard", tmp_path / "nowhere")
    assert result.exit_code == 2
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "no such results folder" in lines[0]


def test_bad_port_is_refused():
    assert lab("dashboard", ".", "--port", "70000").exit_code == 2


def _setuptools_ok():
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 68


@pytest.mark.skipif(not _setuptools_ok(), reason="building the wheel offline needs setuptools >= 68 in this environment")
def test_a_normal_wheel_ships_the_app_and_templates(tmp_path):
    source = tmp_path / "source"  # build from a copy, so no build/ or egg-info lands in the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("lab", "dashboards", "tools"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for file in ("pyproject.toml", "README.md"):
        if (ROOT / file).exists():
            shutil.copy(ROOT / file, source / file)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("lab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    views = {p.name for p in (ROOT / "dashboards" / "views").glob("*.py")}
    assert {"dashboards/app.py", "dashboards/data.py", "dashboards/navigation.py", "lab/dashboard_cli.py",
            "lab/present/figures/entanglement.py", "lab/report/templates/report.html.j2"} <= names
    assert {f"dashboards/views/{v}" for v in views} <= names
    assert not [n for n in names if n.startswith("tools/") or n.endswith(("browser.py", "screenshots.py"))]
    # Import from the unpacked wheel with site's .pth files off (so the editable checkout cannot answer):
    # the app and the template are found inside the installed tree.
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    site_packages = next(p for p in sys.path if p.endswith("site-packages"))
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]];"
            "from lab.dashboard_cli import app_path; from lab.report.html import environment;"
            "environment().get_template('report.html.j2'); print(app_path())")
    out = subprocess.run([sys.executable, "-S", "-c", code, str(unpacked), site_packages],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == unpacked / "dashboards" / "app.py"
