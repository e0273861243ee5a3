"""The report has one section per probe family whose tables the schema declares, each with its
builder, and none for a family whose table is not declared."""

from lab.present.families import families, registered
from lab.report import content
from lab.report.sections import BUILDERS
from lab.store.schema import TABLES


def test_every_family_has_a_section():
    assert all(f.section is not None or f.key in BUILDERS for f in registered())


def test_sections_follow_the_schema(lab_results_folder, monkeypatch):
    report = content.build(lab_results_folder.partial)
    keys = ["deltas", "entanglement", "spectra", "esd", "intruders", "attention", "no_hair", "forgetting", "thresholds",
            "msu", "msu_pairs", "similarity", "merge"]
    assert [s.key for s in report.sections] == [f.key for f in families()] == keys
    report.close()
    monkeypatch.delitem(TABLES, "spectra")
    report = content.build(lab_results_folder.partial)
    assert [s.key for s in report.sections] == [k for k in keys if k != "spectra"]
    report.close()
