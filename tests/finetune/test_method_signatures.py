"""analyses/method_signatures.py on real (2-step) fine-tunes of MiniLM: the figure and summary are
written, the table's numbers are the stored tables' (recomputed here with pandas from the parquet
files), LoHa's structural bound is r², and a second call reuses the cached fine-tunes and analyses."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pandas as pd

SCRIPT = Path(__file__).resolve().parents[2] / "analyses" / "method_signatures.py"


def test_method_signatures_writes_figure_and_summary_from_the_stored_tables(tmp_path):
    script = runpy.run_path(str(SCRIPT))
    work, out = tmp_path / "work", tmp_path / "out"
    args = ["--workdir", str(work), "--out", str(out), "--methods", "lora,loha", "--steps", "2", "--budget", "40000"]
    assert script["main"](args) == 0
    assert (out / "method_signatures.png").stat().st_size > 10_000
    text = (out / "method_signatures.md").read_text()
    for method in ("lora", "loha"):
        run = work / "results" / method
        deltas = pd.read_parquet(run / "deltas.parquet")
        deltas = deltas[deltas.checkpoint != "controls"]
        summary = pd.read_parquet(run / "entanglement_summary.parquet")
        summary = summary[summary.source == "delta"]
        spectra = pd.read_parquet(run / "spectra.parquet")
        spectra = spectra[spectra.source == "delta"]
        row = next(line for line in text.splitlines() if line.startswith(f"| {method} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert int(cells[2].replace(",", "")) == int(deltas.params.sum())
        assert float(cells[4]) == float(f"{summary.valley_entropy.mean():.3g}")
        assert float(cells[9]) == float(f"{spectra.stable_rank.mean():.3g}")
        assert cells[6] == f"{int((summary.valley_entropy <= np.log(summary.rank_bound) + 1e-9).sum())}/{len(summary)}"
    loha = pd.read_parquet(work / "results" / "loha" / "deltas.parquet")
    r = int(next(line for line in text.splitlines() if line.startswith("| loha |")).split("|")[2].split("=")[1])
    assert set(loha.loc[loha.checkpoint != "controls", "rank_bound"]) == {r * r}
    stamps = {p: p.stat().st_mtime_ns for p in (work / "results").rglob("*.parquet")}
    assert script["main"](args) == 0  # cached: nothing trained or analysed again
    assert {p: p.stat().st_mtime_ns for p in (work / "results").rglob("*.parquet")} == stamps
