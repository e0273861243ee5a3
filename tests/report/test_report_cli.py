"""``lab report`` and ``write_report``: formats, output files, "not computed" on partial runs,
and user errors as one stderr line with exit code 2."""

from html import unescape

import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from lab.errors import InputError, LabError
from lab.report import write_report
from lab.present.families import families
from lab.present.family import NOT_COMPUTED

def lab(*args):
    """The lab command in-process (a subprocess would spend seconds importing torch for other commands)."""
    from lab.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_user_error(result, needle):
    assert result.exit_code == 2, result.output
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert needle in lines[0]


def test_report_command_writes_the_requested_format_only(lab_results_folder, tmp_path):
    result = lab("report", lab_results_folder.partial, "--format", "html", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["report.html"]
    assert result.stdout.strip() == str(tmp_path / "out" / "report.html")


def test_help_explains_every_option():
    out = lab("report", "--help").output
    for option in ("--format", "--out", "--title", "RESULTS_DIR"):
        assert option in out


def test_partial_run_says_not_computed_for_every_missing_family(lab_results_folder, tmp_path):
    html, pdf = write_report(lab_results_folder.partial, tmp_path)
    text = unescape(html.read_text(encoding="utf-8"))  # a title such as "WeightWatcher's" is escaped in the HTML
    pdf_text = " ".join(" ".join((p.extract_text() or "").split()) for p in PdfReader(pdf).pages)
    run_dir = next(p for p in lab_results_folder.partial.iterdir() if (p / "manifest.json").is_file())  # not .lab-cache
    present = {p.stem for p in run_dir.glob("*.parquet")}
    assert present == {"deltas"}
    for family in families():
        notice = f"{family.title}: {NOT_COMPUTED}"
        assert (notice in text) == (family.tables[0] not in present), family.key
        assert (notice in pdf_text) == (family.tables[0] not in present), family.key


def test_a_single_run_folder_is_a_results_folder_of_one(lab_results_folder, tmp_path):
    run_dir = next(p for p in lab_results_folder.partial.iterdir() if (p / "manifest.json").is_file())  # not .lab-cache
    (html,) = write_report(run_dir, tmp_path, ["html"])
    assert "deltas-only" in html.read_text(encoding="utf-8")


@pytest.mark.parametrize("args, needle", [
    (["--format", "docx"], "unknown report format(s) docx"),
])
def test_bad_format_is_a_user_error(lab_results_folder, tmp_path, args, needle):
    assert_user_error(lab("report", lab_results_folder.partial, *args, "--out", tmp_path), needle)


def test_missing_and_empty_folders_are_user_errors(lab_results_folder, tmp_path):
    assert_user_error(lab("report", tmp_path / "nowhere", "--out", tmp_path / "o"), "no such results folder")
    assert_user_error(lab("report", lab_results_folder.empty, "--out", tmp_path / "o"), "no lab runs")
    with pytest.raises(InputError):
        write_report(lab_results_folder.empty, tmp_path / "o")
    with pytest.raises(LabError):
        write_report(lab_results_folder.partial, tmp_path / "o", [])
