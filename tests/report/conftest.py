"""One real results folder per session for the report tests (built by lab.analyze)."""

import pytest

import lab_results


@pytest.fixture(scope="session")
def lab_results_folder(tmp_path_factory):
    return lab_results.build(tmp_path_factory.mktemp("report_results"))


@pytest.fixture(scope="session")
def written_report(lab_results_folder, tmp_path_factory):
    """report.html and report.pdf of the two-run results folder, written once."""
    from lab.report import write_report

    html, pdf = write_report(lab_results_folder.results, tmp_path_factory.mktemp("report"))
    return html, pdf
