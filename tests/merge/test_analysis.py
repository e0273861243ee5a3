"""analyses/msu_merge.py on real tiny adapters: the figure and summary are written, and the table's
numbers are those of lab merge (svd equals the Eckart–Young optimum, stack is exact)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from conftest import make_adapter

SCRIPT = Path(__file__).resolve().parents[2] / "analyses" / "msu_merge.py"


def test_msu_merge_analysis_writes_figure_and_summary(tmp_path):
    adapters = [make_adapter(tmp_path / n, s, r=2, lora_alpha=4, target_modules=["q_proj"]) for n, s in (("a", 1), ("b", 2))]
    script = runpy.run_path(str(SCRIPT))
    df = script["measure"](adapters)
    svd = df[df.method == "svd"]
    assert (svd.rel_fro_error - svd.optimal_rel_fro_error).abs().max() < 1e-10
    assert df[df.method == "stack"].rel_fro_error.max() < 1e-13
    assert (df[df.method == "lego"].rel_fro_error >= df[df.method == "lego"].optimal_rel_fro_error - 1e-12).all()
    assert script["main"](["--adapters", *map(str, adapters), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "msu_merge.png").stat().st_size > 1000
    text = (tmp_path / "out" / "msu_merge.md").read_text()
    assert "linear (index-wise averaging) at k = 2" in text and "LEGO against svd" in text
