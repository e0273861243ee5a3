"""Shared by every test folder: tests/ on sys.path (for builders.py), CI's rule about skips, the
Hypothesis profiles, the slowest test of each file, and a guard against a CPython 3.11 race.

When the ``CI`` environment variable is set (``.ci/run`` sets it), a skipped test is a failed test
unless its node id is on the allow-list in ``tests/allowed_skips.txt``: a test that needs Chromium,
pdftotext or any other tool the CI installs must run there, and a missing tool must not turn into a
green run that tested less. Skips of whole modules at collection count too (the run fails at the
end), and so does a non-strict xfail, which passes whether or not the code works. Every skip under
CI is listed in the terminal summary, allowed or not. Every run ends with the slowest test of each
file, so a test that grows slow is seen where it is.
"""

from __future__ import annotations

import ast
import fnmatch
import gc
import os
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

# tests/builders.py is shared by every test folder
sys.path.insert(0, str(Path(__file__).parent))

ALLOWED_SKIPS = Path(__file__).with_name("allowed_skips.txt")


def _serialize_ast_parse() -> None:
    """Make ``ast.parse`` safe on CPython < 3.11.8 (CPython gh-106905): one parse at a time, with the
    garbage collector paused while it runs.

    Before 3.11.8 the AST constructor keeps its recursion depth in per-interpreter state and resets it at
    the start of every parse. A garbage collection inside a parse runs ``gc.callbacks`` and finalizers:
    when that Python code parses too (Python 3.11's ``traceback`` parses source lines for its ``^^^^``
    markers whenever something logs an exception, as Dask's client, scheduler and nannies do in threads
    of the test process) or lets another thread parse, the outer parse ends with a corrupted count and
    raises ``SystemError: AST constructor recursion depth mismatch``. pytest parses the test's source to
    show a failure, so a failing Dask test crashed pytest with an INTERNALERROR instead of being reported.
    With the collector paused nothing else runs inside a parse (C code that releases nothing), and the
    lock keeps two parses apart anyway. tests/test_ci.py reproduces the crash and checks the guard.
    """
    if sys.version_info >= (3, 11, 8) or getattr(ast.parse, "_lab_serialized", False):
        return
    parse, lock = ast.parse, threading.RLock()

    def serialized(*args, **kwargs):
        with lock:
            collecting = gc.isenabled()
            gc.disable()
            try:
                return parse(*args, **kwargs)
            finally:
                if collecting:
                    gc.enable()

    serialized._lab_serialized = True
    serialized.__wrapped__ = parse
    ast.parse = serialized


_serialize_ast_parse()


# Hypothesis profiles (``--hypothesis-profile=NAME``; ``ci`` when none is given), registered here so the
# option works from the repository's root (a profile named on the command line must exist when pytest
# configures, before the fuzz folder's conftest is collected):
# * ``ci``: a fixed seed (``derandomize=True``), no example database, a budget that keeps tests/fuzz to a
#   few hundred examples; no "explain" phase (it reruns a failing example many times to annotate it);
# * ``long``: twenty times the examples and a random seed, for a run by hand; its failures are kept in
#   the local ``.hypothesis/`` database (ignored by git) so a rerun finds them again.
_HYPOTHESIS = dict(deadline=None,  # one example runs a whole analysis: its time varies with the machine's load
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
                   print_blob=True)
settings.register_profile("ci", max_examples=40, derandomize=True, database=None,
                          phases=[Phase.explicit, Phase.generate, Phase.shrink], **_HYPOTHESIS)
settings.register_profile("long", max_examples=800, **_HYPOTHESIS)


def in_ci() -> bool:
    """Whether the tests run under CI (``CI`` set to anything non-empty, as CI services and .ci/run do)."""
    return bool(os.environ.get("CI"))


def allowed_skips(path: Path = ALLOWED_SKIPS) -> list[str]:
    """The allow-list: one node id or fnmatch pattern per line; ``#`` starts a comment."""
    if not path.is_file():
        return []
    entries = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [e for e in entries if e]


def is_allowed(nodeid: str, patterns: list[str]) -> bool:
    """Whether a skip of ``nodeid`` (or of a parametrised case's function, ``id[...]``) is allowed."""
    return any(fnmatch.fnmatchcase(nodeid, p) or fnmatch.fnmatchcase(nodeid.split("[", 1)[0], p) for p in patterns)


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: why")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


# skips seen under CI in this session: (nodeid, reason) by kind. Counted where the reports are
# logged: in the one pytest process, or in pytest-xdist's controller (its workers only turn skips
# into failures and tag the report).
_SKIPS: dict[str, list[tuple[str, str]]] = {"allowed": [], "unexpected": []}
_TAG = "lab_ci_skip"
_COUNTING = {"here": True}  # False in an xdist worker: its reports are counted by the controller
# seconds per test (setup + call + teardown), by node id; summed where the reports are logged (the one
# pytest process, or xdist's controller), for the slowest test of each file at the end of every run
_DURATIONS: dict[str, float] = {}


def pytest_configure(config):
    if config.getoption("hypothesis_profile", None) is None:  # an explicit --hypothesis-profile wins
        settings.load_profile("ci")
    for seen in _SKIPS.values():
        seen.clear()
    _DURATIONS.clear()
    _COUNTING["here"] = not hasattr(config, "workerinput")


def _non_strict_xfail(item, report) -> bool:
    """An xfail that lets the run pass whichever way the test goes: ``strict=False`` (or no ``strict``
    with the ini's ``xfail_strict`` off), or an imperative ``pytest.xfail()`` inside the test."""
    if not hasattr(report, "wasxfail"):
        return False
    marker = item.get_closest_marker("xfail")
    if marker is None:  # pytest.xfail() called by the test: nothing was checked
        return True
    return not marker.kwargs.get("strict", item.config.getini("xfail_strict"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI, a skip not on the allow-list becomes this test's failure (setup skips: an error), and so
    does a non-strict xfail (xfailed or xpassed): it passes whether or not the code works."""
    report = yield
    if not in_ci():
        return report
    if _non_strict_xfail(item, report):
        reason = f"non-strict xfail: {report.wasxfail}"
        if is_allowed(report.nodeid, allowed_skips()):
            report.user_properties.append((_TAG, ("allowed", reason)))
            return report
        report.user_properties.append((_TAG, ("unexpected", reason)))
        del report.wasxfail
        report.outcome = "failed"
        report.longrepr = (f"{reason}; under CI an xfail must be strict (it fails the run if the test passes) or be "
                           f"listed in {ALLOWED_SKIPS.relative_to(ALLOWED_SKIPS.parents[1])} with the reason")
        return report
    if not report.skipped or hasattr(report, "wasxfail"):  # a strict xfail is reported as a skip: leave it
        return report
    reason = _skip_reason(report)
    if is_allowed(report.nodeid, allowed_skips()):
        report.user_properties.append((_TAG, ("allowed", reason)))
        return report
    report.user_properties.append((_TAG, ("unexpected", reason)))
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI ({reason}); under CI a test must run. Install what it needs in .ci/run, "
                       f"or add its node id to {ALLOWED_SKIPS.relative_to(ALLOWED_SKIPS.parents[1])} with the reason")
    return report


def _count_skips(report) -> None:
    if not _COUNTING["here"]:
        return
    for name, value in report.user_properties:
        if name == _TAG:
            kind, reason = value
            _SKIPS[kind].append((report.nodeid, reason))


def pytest_collectreport(report):
    """A module skipped at collection (``pytest.importorskip`` at the top, ``allow_module_level``); under
    xdist the controller gets each worker's skipped collection once."""
    if report.skipped and in_ci() and _COUNTING["here"]:
        kind = "allowed" if is_allowed(report.nodeid, allowed_skips()) else "unexpected"
        _SKIPS[kind].append((report.nodeid, _skip_reason(report)))


def pytest_sessionfinish(session, exitstatus):
    """Under CI, any skip outside the allow-list fails the run (a collection-time skip cannot fail a test)."""
    if _SKIPS["unexpected"] and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_runtest_logreport(report):
    if _COUNTING["here"]:
        _DURATIONS[report.nodeid] = _DURATIONS.get(report.nodeid, 0.0) + getattr(report, "duration", 0.0)
    _count_skips(report)


def slowest_per_file(durations: dict[str, float]) -> list[tuple[str, str, float]]:
    """(file, its slowest test's node id, seconds) for each file, slowest file first."""
    best: dict[str, tuple[str, float]] = {}
    for nodeid, seconds in durations.items():
        path = nodeid.split("::", 1)[0]
        if path not in best or seconds > best[path][1]:
            best[path] = (nodeid, seconds)
    return sorted(((path, nodeid, sec) for path, (nodeid, sec) in best.items()), key=lambda row: -row[2])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _DURATIONS and _COUNTING["here"]:
        terminalreporter.section("slowest test of each file")
        for _, nodeid, seconds in slowest_per_file(_DURATIONS):
            terminalreporter.line(f"{seconds:8.2f}s  {nodeid}")
    _skips_summary(terminalreporter)


def _skips_summary(terminalreporter) -> None:
    skips = _SKIPS
    if not in_ci() or not (skips["allowed"] or skips["unexpected"]):
        return
    terminalreporter.section("skips under CI")
    for nodeid, reason in skips["unexpected"]:
        terminalreporter.line(f"NOT ALLOWED  {nodeid}: {reason}", red=True)
    for nodeid, reason in skips["allowed"]:
        terminalreporter.line(f"allowed      {nodeid}: {reason}")
    if skips["unexpected"]:
        terminalreporter.line(f"{len(skips['unexpected'])} skip(s) or non-strict xfail(s) not on {ALLOWED_SKIPS.name}: "
                              "the run fails", red=True)
