"""CI is strict about skips: under ``CI`` a skipped test fails unless tests/allowed_skips.txt lists it,
a module skipped at collection fails the run, every skip is listed; ``.ci/run`` sets ``CI`` itself.

Each case runs pytest in a fresh process on a small test folder that uses this suite's own
tests/conftest.py and an allow-list written for the case.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
ROOT = TESTS.parent

SAMPLE = '''
import shutil

import pytest


def test_runs():
    pass


def test_needs_a_tool():
    if shutil.which("no-such-tool-for-lab-tests") is None:
        pytest.skip("pdftotext (Debian poppler-utils) is not installed")


@pytest.mark.skipif(True, reason="needs an optional install")
@pytest.mark.parametrize("case", [1, 2])
def test_optional(case):
    pass


@pytest.fixture
def browser():
    pytest.skip("headless Chromium is not installed")


def test_in_a_browser(browser):
    pass


@pytest.mark.xfail(reason="known", strict=False)
def test_known_failure():
    assert False
'''

MODULE_SKIP = '''
import pytest

pytest.importorskip("no_such_module_for_lab_tests")


def test_never_collected():
    pass
'''


def suite_conftest():
    """tests/conftest.py as a module of its own (``import conftest`` could find another folder's)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lab_tests_root_conftest", TESTS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_sample(tmp_path: Path, allowed: list[str], ci: str | None, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    folder = tmp_path / "tests"
    folder.mkdir(exist_ok=True)
    shutil.copy(TESTS / "conftest.py", folder / "conftest.py")
    (folder / "allowed_skips.txt").write_text("# the sample's allow-list\n" + "".join(f"{a}  # why\n" for a in allowed))
    (folder / "test_sample.py").write_text(SAMPLE)
    (folder / "test_module_skip.py").write_text(MODULE_SKIP)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           *extra, str(folder)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)


def outcomes(out: str) -> dict[str, int]:
    """The counts on pytest's last line ("1 failed, 2 passed, ... in 0.1s")."""
    last = out.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last)}


def test_without_ci_skips_are_skips(tmp_path):
    result = run_sample(tmp_path, [], ci=None)
    assert result.returncode == 0, result.stdout
    assert outcomes(result.stdout) == {"passed": 1, "skipped": 5, "xfailed": 1}
    assert "skips under CI" not in result.stdout


# the README's test command runs the suite on pytest-xdist workers: the rule must hold there too, where
# the workers turn skips into failures and the controller lists them and fails the run
@pytest.mark.parametrize("extra", [(), ("-n", "2", "--dist", "loadfile")], ids=["one process", "xdist"])
def test_under_ci_a_skip_off_the_allow_list_fails(tmp_path, extra):
    result = run_sample(tmp_path, ["tests/test_sample.py::test_optional"], ci="true", extra=extra)
    out = result.stdout
    assert result.returncode == 1, out
    # the tool-less test fails, the fixture's skip is an error, the allowed cases still skip, xfail stays xfail
    assert outcomes(out) == {"failed": 1, "passed": 1, "skipped": 3, "xfailed": 1, "error": 1}, out
    assert re.search(r"FAILED tests/test_sample.py::test_needs_a_tool - .*pdftotext", out)
    assert re.search(r"ERROR tests/test_sample.py::test_in_a_browser - .*Chromium", out)
    assert "tests/allowed_skips.txt" in out  # the failure says how to allow it
    summary = out.split("skips under CI", 1)[1]
    for nodeid in ("tests/test_sample.py::test_needs_a_tool", "tests/test_sample.py::test_in_a_browser",
                   "tests/test_module_skip.py"):
        assert re.search(rf"NOT ALLOWED  {re.escape(nodeid)}\b", summary), summary
    for case in (1, 2):
        assert f"allowed      tests/test_sample.py::test_optional[{case}]: needs an optional install" in summary
    assert "3 skip(s) not on allowed_skips.txt: the run fails" in summary


@pytest.mark.parametrize("extra", [(), ("-n", "2", "--dist", "loadfile")], ids=["one process", "xdist"])
def test_under_ci_a_skipped_module_alone_fails_the_run(tmp_path, extra):
    allowed = ["tests/test_sample.py::*"]
    result = run_sample(tmp_path, allowed, ci="1", extra=extra)
    assert result.returncode == 1, result.stdout  # every test passed or was allowed: the module's skip fails it
    assert "NOT ALLOWED  tests/test_module_skip.py" in result.stdout
    ok = run_sample(tmp_path, allowed + ["tests/test_module_skip.py"], ci="1", extra=extra)
    assert ok.returncode == 0, ok.stdout
    assert "NOT ALLOWED" not in ok.stdout and "allowed      tests/test_module_skip.py" in ok.stdout


def test_ci_run_sets_ci_before_running_the_tests():
    lines = [shlex.split(line, comments=True) for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    lines = [words for words in lines if words]
    exported = next(i for i, words in enumerate(lines) if words[:2] == ["export", "CI=true"])
    pytest_line = next(i for i, words in enumerate(lines) if words[:3] == ["python", "-m", "pytest"])
    assert exported < pytest_line
    assert not any("CI=" in w for words in lines[exported + 1:] for w in words), "CI must not be unset again"


def test_the_allow_list_parses_and_names_real_tests():
    """Every entry of the repository's allow-list names a test file that exists (a stale entry would
    silently allow a skip in whatever later takes that name)."""
    for entry in suite_conftest().allowed_skips():
        assert (ROOT / entry.split("::", 1)[0]).is_file(), entry


@pytest.mark.parametrize("nodeid, allowed", [
    ("tests/a.py::test_x[1]", True), ("tests/a.py::test_x", True), ("tests/a.py::test_xy", False), ("tests/b.py::test_x", False),
])
def test_allow_list_entries_cover_parametrised_cases(nodeid, allowed):
    assert suite_conftest().is_allowed(nodeid, ["tests/a.py::test_x"]) is allowed
