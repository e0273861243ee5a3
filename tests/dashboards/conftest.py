"""One real results folder per session for the dashboard tests (built by lab.analyze, with the
same builder as the report tests)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "report"))  # the shared builder lives with the report tests
sys.path.insert(0, str(Path(__file__).parents[2]))  # tools/ (browser driver) is not installed: import it from the checkout

import lab_results  # noqa: E402


@pytest.fixture(scope="session")
def lab_results_folder(tmp_path_factory):
    return lab_results.build(tmp_path_factory.mktemp("dashboard_results"))
