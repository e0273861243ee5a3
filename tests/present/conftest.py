"""One real results folder per session for the presentation tests (built by lab.analyze and lab merge,
with the same builder as the report tests)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "report"))  # the shared builder lives with the report tests

import lab_results  # noqa: E402


@pytest.fixture(scope="session")
def lab_results_folder(tmp_path_factory):
    return lab_results.build(tmp_path_factory.mktemp("present_results"))
