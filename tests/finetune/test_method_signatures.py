"""analyses/method_signatures.py on real (2-step) fine-tunes of MiniLM at two seeds: the figure and
summary are written; the per-seed table's numbers are the stored tables' (recomputed here with
pandas from the parquet files) and the main table's mean ± sd are those of the per-seed values
(numpy, ddof = 1); the distance to the Gaussian control is recomputed from the per-cut rows;
LoHa's structural bound is r²; a second call reuses the cached fine-tunes and analyses."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pandas as pd

SCRIPT = Path(__file__).resolve().parents[2] / "analyses" / "method_signatures.py"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_method_signatures_writes_figure_and_summary_from_the_stored_tables(tmp_path):
    script = runpy.run_path(str(SCRIPT))
    work, out = tmp_path / "work", tmp_path / "out"
    args = ["--workdir", str(work), "--out", str(out), "--methods", "lora,loha", "--steps", "2", "--budget", "40000",
            "--seeds", "2"]
    assert script["main"](args) == 0
    assert (out / "method_signatures.png").stat().st_size > 10_000
    text = (out / "method_signatures.md").read_text()
    assert "Sanity check" in text and "48/48 module-seeds: passed." in text
    for method in ("lora", "loha"):
        per_seed = {}
        for seed in (0, 1):
            run = work / f"seed-{seed}" / "results" / method
            summary = pd.read_parquet(run / "entanglement_summary.parquet")
            summary = summary[summary.source == "delta"]
            spectra = pd.read_parquet(run / "spectra.parquet")
            spectra = spectra[spectra.source == "delta"]
            ent = pd.read_parquet(run / "entanglement.parquet")
            gauss = ent[ent.source == "random"]
            gauss = gauss[gauss.module == gauss.module.iloc[0]].set_index("cut").entropy
            delta = ent[ent.source == "delta"]
            to_gauss = np.mean([np.sqrt(np.mean((g.set_index("cut").entropy - gauss) ** 2)) for _, g in delta.groupby("module")])
            row = next(_cells(line) for line in text.splitlines() if line.startswith(f"| {method} | {seed} |"))
            assert float(row[2]) == float(f"{summary.valley_entropy.mean():.3g}")
            assert float(row[3]) == float(f"{summary.valley_depth.mean():.3g}")
            assert float(row[4]) == float(f"{to_gauss:.3g}")
            assert float(row[5]) == float(f"{spectra.stable_rank.mean():.3g}")
            per_seed[seed] = (summary.valley_entropy.mean(), spectra.stable_rank.mean())
        main = next(_cells(line) for line in text.splitlines() if line.startswith(f"| {method} | ") and "±" in line)
        s = np.array([per_seed[0][0], per_seed[1][0]])
        assert main[4] == f"{s.mean():.3f} ± {s.std(ddof=1):.3f}"
        r = np.array([per_seed[0][1], per_seed[1][1]])
        assert main[11] == f"{r.mean():.2f} ± {r.std(ddof=1):.2f}"
        deltas = pd.read_parquet(work / "seed-0" / "results" / method / "deltas.parquet")
        assert int(main[2].replace(",", "")) == int(deltas.loc[deltas.checkpoint != "controls", "params"].sum())
    loha = pd.read_parquet(work / "seed-0" / "results" / "loha" / "deltas.parquet")
    r = int(next(line for line in text.splitlines() if line.startswith("| loha |") and "±" in line).split("|")[2].split("=")[1])
    assert set(loha.loc[loha.checkpoint != "controls", "rank_bound"]) == {r * r}
    stamps = {p: p.stat().st_mtime_ns for p in work.rglob("results/*/*.parquet")}
    assert script["main"](args) == 0  # cached: nothing trained or analysed again
    assert {p: p.stat().st_mtime_ns for p in work.rglob("results/*/*.parquet")} == stamps
