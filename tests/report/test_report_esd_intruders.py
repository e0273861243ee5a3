"""The report's esd and intruders sections: built from the shared figure functions, with the headline figures
the findings link to, and summary tables whose numbers equal pandas on the parquet files."""

import pandas as pd
import pytest

import lab_results
from lab.report import content


@pytest.fixture(scope="module")
def report(lab_results_folder):
    built = content.build(lab_results_folder.results)
    yield built
    built.close()


def section(report, key):
    """The family's section with its overview figures drawn (where the report draws them lazily, on demand)."""
    found = next(s for s in report.sections if s.key == key)
    draw = getattr(found, "draw", None)
    if callable(draw):
        draw(details=False)
    return found


def table(block) -> pd.DataFrame:
    return block.frame()


def test_esd_section_draws_alpha_and_its_shift_and_tabulates_the_medians(report, lab_results_folder):
    esd = section(report, "esd")
    assert esd.computed and not esd.message
    titles = [c.title for c in esd.charts]
    assert titles[0].startswith("Power-law α by layer: base W and W + ΔW") and titles[1].startswith("α(W + ΔW) − α(W)")
    shown = table(esd.tables[0])
    for run in (lab_results.LORA_RUN, lab_results.MARKUP_RUN):
        stored = pd.read_parquet(lab_results_folder.results / run / "esd.parquet")
        stored = stored[stored["source"].isin(["weight", "tuned", "delta"])]
        want = stored.groupby(["checkpoint", "source", "role"])["alpha"].median()
        mine = shown[shown["run"] == run]
        assert len(mine) == len(want)
        names = {"base W": "weight", "W + ΔW": "tuned", "ΔW": "delta"}
        for row in mine.itertuples():
            assert float(row.alpha) == pytest.approx(want[(row.checkpoint, names[row.matrix], row.role)], rel=1e-3)


def test_intruders_section_maps_both_sides_and_tabulates_the_sweep(report, lab_results_folder):
    intruders = section(report, "intruders")
    assert intruders.computed and not intruders.message
    titles = [c.title for c in intruders.charts]
    assert [t.split(",")[0] for t in titles[:2]] == ["Intruders at ε = 0.5"] * 2
    assert "(left vectors)" in titles[0] and "(right vectors)" in titles[1] and titles[2].startswith("Intruders against ε")
    shown = table(intruders.tables[0])
    for run in (lab_results.LORA_RUN, lab_results.MARKUP_RUN):
        stored = pd.read_parquet(lab_results_folder.results / run / "intruders.parquet")
        want = stored.groupby(["checkpoint", "side", "top_k", "threshold"])["intruder_count"].sum()
        mine = shown[shown["run"] == run]
        assert len(mine) == stored.groupby(["checkpoint", "side", "top_k"]).ngroups
        for row in mine.to_dict("records"):
            for eps in (0.1, 0.5, 0.9):
                assert int(row[f"ε = {eps:g}"]) == want[(row["checkpoint"], row["side"], int(row["top_k"]), eps)]


def test_the_findings_link_to_the_esd_and_intruders_headlines(report):
    found = {f.findings.key: f for f in report.findings}
    for key in ("esd", "intruders"):
        assert found[key].chart is not None and found[key].chart.anchor == f"fig-{key}"
