"""The report has one section per probe family whose tables the schema declares, each drawn from the
family's own record, and none for a family whose table is not declared."""

from lab.present.families import BUILTIN, families
from lab.report import content
from lab.store.schema import TABLES


def test_every_built_in_family_declares_its_findings_headline_and_section():
    assert [f.key for f in BUILTIN if f.findings is None or f.headline is None or f.section is None] == []


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
