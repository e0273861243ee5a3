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


def test_a_section_showing_its_headline_figure_shares_the_findings_chart(lab_results_folder):
    """Where a family's section marks a figure as its headline figure (lab.present.page.Headline), the report shows
    the chart drawn for the findings instead of drawing it again: each section's figures must be the ones its own
    figure functions draw (same title, caption and PNG bytes), each with an anchor of its own."""
    from lab.present import colours, load
    from lab.present.families import by_key
    from lab.present.family import rows_section
    from lab.report.document import Section
    from lab.report.page import build as build_section

    report = content.build(lab_results_folder.results, workers=1, overview=True, details=False)
    runs = load.runs_in(lab_results_folder.results)
    names, methods = [r.name for r in runs], load.run_methods(runs)
    headlines = {f.findings.key: f.chart for f in report.findings if f.chart is not None}
    shared = 0
    try:
        for section in report.sections:
            if not section.computed:
                continue
            family = by_key(section.key)
            own = Section(section.key, section.title, section.theory, True)
            with colours.using(names, methods):
                build_section(own, runs, family.section or rows_section(family))
                own.draw(overview=True, details=False)
            assert len(own.charts) == len(section.charts), section.key
            for ours, drawn in zip(section.charts, own.charts):
                assert (ours.title, ours.caption, ours.png()) == (drawn.title, drawn.caption, drawn.png()), ours.title
                head = headlines.get(section.key)
                shared += head is not None and ours.figure is head.figure and ours is not head
                drawn.close()
        anchors = [c.anchor for c in report.charts()]
        assert len(anchors) == len(set(anchors))
        assert shared >= 2  # esd and forgetting in these runs
    finally:
        report.close()
