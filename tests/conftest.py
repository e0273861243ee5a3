"""Shared by every test folder: tests/ on sys.path (for builders.py), and CI's rule about skips.

When the ``CI`` environment variable is set (``.ci/run`` sets it), a skipped test is a failed test
unless its node id is on the allow-list in ``tests/allowed_skips.txt``: a test that needs Chromium,
pdftotext or any other tool the CI installs must run there, and a missing tool must not turn into a
green run that tested less. Skips of whole modules at collection count too (the run fails at the
end). Every skip under CI is listed in the terminal summary, allowed or not.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from pathlib import Path

import pytest

# tests/builders.py is shared by every test folder
sys.path.insert(0, str(Path(__file__).parent))

ALLOWED_SKIPS = Path(__file__).with_name("allowed_skips.txt")


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


def pytest_configure(config):
    for seen in _SKIPS.values():
        seen.clear()
    _COUNTING["here"] = not hasattr(config, "workerinput")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI, a skip not on the allow-list becomes this test's failure (setup skips: an error)."""
    report = yield
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):  # xfail is reported as a skip: leave it
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


def pytest_runtest_logreport(report):
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


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skips = _SKIPS
    if not in_ci() or not (skips["allowed"] or skips["unexpected"]):
        return
    terminalreporter.section("skips under CI")
    for nodeid, reason in skips["unexpected"]:
        terminalreporter.line(f"NOT ALLOWED  {nodeid}: {reason}", red=True)
    for nodeid, reason in skips["allowed"]:
        terminalreporter.line(f"allowed      {nodeid}: {reason}")
    if skips["unexpected"]:
        terminalreporter.line(f"{len(skips['unexpected'])} skip(s) not on {ALLOWED_SKIPS.name}: the run fails", red=True)
