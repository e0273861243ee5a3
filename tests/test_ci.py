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


@pytest.mark.xfail(reason="known and checked", strict=True)
def test_known_failure_checked():
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
    assert outcomes(result.stdout) == {"passed": 1, "skipped": 5, "xfailed": 2}
    assert "skips under CI" not in result.stdout


# the README's test command runs the suite on pytest-xdist workers: the rule must hold there too, where
# the workers turn skips into failures and the controller lists them and fails the run
@pytest.mark.parametrize("extra", [(), ("-n", "2", "--dist", "loadfile")], ids=["one process", "xdist"])
def test_under_ci_a_skip_off_the_allow_list_fails(tmp_path, extra):
    result = run_sample(tmp_path, ["tests/test_sample.py::test_optional"], ci="true", extra=extra)
    out = result.stdout
    assert result.returncode == 1, out
    # the tool-less test fails, the fixture's skip is an error, the allowed cases still skip, a strict xfail
    # stays xfail, a non-strict one fails (it would pass whichever way the code went)
    assert outcomes(out) == {"failed": 2, "passed": 1, "skipped": 3, "xfailed": 1, "error": 1}, out
    assert re.search(r"FAILED tests/test_sample.py::test_needs_a_tool - .*pdftotext", out)
    assert re.search(r"FAILED tests/test_sample.py::test_known_failure - .*non-strict xfail", out)
    assert re.search(r"ERROR tests/test_sample.py::test_in_a_browser - .*Chromium", out)
    assert "tests/allowed_skips.txt" in out  # the failure says how to allow it
    summary = out.split("skips under CI", 1)[1]
    for nodeid in ("tests/test_sample.py::test_needs_a_tool", "tests/test_sample.py::test_in_a_browser",
                   "tests/test_sample.py::test_known_failure", "tests/test_module_skip.py"):
        assert re.search(rf"NOT ALLOWED  {re.escape(nodeid)}\b", summary), summary
    for case in (1, 2):
        assert f"allowed      tests/test_sample.py::test_optional[{case}]: needs an optional install" in summary
    assert "4 skip(s) or non-strict xfail(s) not on allowed_skips.txt: the run fails" in summary


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


RACE = '''
import ast
import gc


def test_fails_while_a_collection_parses():
    \"\"\"A garbage collection that runs Python code which parses (a finalizer or a thread logging a
    traceback: Python 3.11's traceback parses source for its ^^^ markers), as Dask's objects in the test
    process do.\"\"\"
    def parse_during_collection(phase, info):
        if phase == "start":
            ast.parse("x = [1, 2, 3]")

    gc.callbacks.append(parse_during_collection)
    assert 1 == 2  # pytest parses this file to show the failure; collections happen meanwhile
''' + "".join(f"\nPAD_{i} = [{i}, ({i}, 'x'), {{'k': {i}}}]" for i in range(2000))  # enough nodes for collections


def test_a_failure_beside_threads_that_parse_is_reported_not_an_internal_error(tmp_path):
    """CPython before 3.11.8 (gh-106905) corrupts its AST constructor's recursion counter when a parse
    runs inside another (a collection's Python code) or beside one in another thread, and pytest crashed
    formatting a failing Dask test (INTERNALERROR, ``SystemError: AST constructor recursion depth
    mismatch``). tests/conftest.py guards ``ast.parse``: the failure is reported as one failed test."""
    folder = tmp_path / "tests"
    folder.mkdir()
    shutil.copy(TESTS / "conftest.py", folder / "conftest.py")
    (folder / "test_race.py").write_text(RACE)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                             str(folder)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert "INTERNALERROR" not in result.stdout + result.stderr, result.stdout[-3000:]
    assert result.returncode == 1 and outcomes(result.stdout) == {"failed": 1}, result.stdout[-3000:]


def _subprocess_calls_without_timeout(path: Path) -> list[int]:
    import ast

    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "subprocess"
                and node.func.attr in ("run", "call", "check_call", "check_output")
                and not any(k.arg == "timeout" for k in node.keywords)):
            lines.append(node.lineno)
    return lines


def test_every_subprocess_a_test_waits_for_has_a_timeout(tmp_path):
    """A child that hangs must fail its test, not stall the run until CI's limit."""
    missing = {str(p.relative_to(ROOT)): lines for p in sorted(TESTS.rglob("*.py"))
               if (lines := _subprocess_calls_without_timeout(p))}
    assert not missing, f"subprocess calls without timeout=: {missing}"
    probe = tmp_path / "probe.py"  # the check finds such a call
    probe.write_text("import subprocess\nsubprocess.run(['true'], check=True)\nsubprocess.run(['true'], timeout=5)\n")
    assert _subprocess_calls_without_timeout(probe) == [2]


def test_slowest_per_file_names_each_files_slowest_test():
    durations = {"tests/a.py::test_x": 1.0, "tests/a.py::test_y[1]": 3.0, "tests/b.py::test_z": 2.0}
    assert suite_conftest().slowest_per_file(durations) == [("tests/a.py", "tests/a.py::test_y[1]", 3.0),
                                                            ("tests/b.py", "tests/b.py::test_z", 2.0)]
