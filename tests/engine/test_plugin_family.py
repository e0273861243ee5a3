"""A probe family of one's own, from one plugin file: it declares its table (lab.store.schema.declare), registers
its probe and its family record, and then, from that declaration alone, `lab analyze --plugin` writes its table and
records the plugin in the manifest, `lab report` has a section for it with its rows and column meanings, and the
dashboard has a page for it. Report and dashboard run in their own processes (the plugin registers globally)."""

from __future__ import annotations

import html
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from lab.store.manifest import sha256

ROOT = Path(__file__).resolve().parents[2]

PLUGIN = textwrap.dedent('''
    """A toy family: the largest entry of each update, in absolute value."""
    import numpy as np

    from lab.present.families import register as register_family
    from lab.present.family import Family
    from lab.probes.registry import Probe, register
    from lab.store.schema import Column, declare

    declare("toy_peaks", "the largest |entry| of each module's update",
            Column("peak", "float64", "max |ΔW_ij| over the update's entries (toy plugin column)"))

    def _peak(delta, options, ctx):
        return {"toy_peaks": [{"peak": float(np.abs(delta.to_dense()).max())}]}

    register(Probe("toy_peak", ("toy_peaks",), _peak, default=False, description="largest |entry| of ΔW"))
    register_family(Family("toy", "Toy peaks", ("toy_peaks",), "The largest entry of ΔW: a plugin's own family.",
                           hint="Run `lab analyze ... --plugin toy.py --probes toy_peak`."))
''')


def _lab(*args, timeout=600):
    done = subprocess.run([sys.executable, "-m", "lab.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, engine_inputs):
    root = tmp_path_factory.mktemp("toy")
    plugin = root / "toy.py"
    plugin.write_text(PLUGIN)
    out = root / "results"
    _lab("analyze", engine_inputs["train"] / "checkpoint-10", "--base", engine_inputs["base"], "--plugin", plugin,
         "--probes", "deltas,toy_peak", "--out", out, "--run", "toy", "--quiet")
    return {"plugin": plugin, "out": out, "run": out / "toy"}


def test_the_plugins_table_holds_numpys_peaks_and_the_manifest_records_the_plugin(toy_run, engine_inputs):
    peaks = pd.read_parquet(toy_run["run"] / "toy_peaks.parquet")
    base = load_file(str(next(Path(engine_inputs["base"]).glob("*.safetensors"))))
    tuned = load_file(str(next((Path(engine_inputs["train"]) / "checkpoint-10").glob("*.safetensors"))))
    for row in peaks.itertuples():
        key = f"{row.module}.weight"
        assert row.peak == pytest.approx(float(np.abs(tuned[key].astype(np.float64) - base[key]).max()), rel=1e-6)
    manifest = json.loads((toy_run["run"] / "manifest.json").read_text())
    assert manifest["plugins"] == [{"path": str(toy_run["plugin"].resolve()), "size": toy_run["plugin"].stat().st_size,
                                    "sha256": sha256(toy_run["plugin"])}]


def test_the_report_has_a_section_for_the_plugins_family(toy_run, tmp_path):
    _lab("report", toy_run["out"], "--format", "html", "--out", tmp_path)
    text = html.unescape((tmp_path / "report.html").read_text())
    assert "Toy peaks" in text and "The largest entry of ΔW: a plugin's own family." in text
    assert "max |ΔW_ij| over the update's entries" in text  # the column's meaning, from its declaration
    peaks = pd.read_parquet(toy_run["run"] / "toy_peaks.parquet")
    for value in peaks["peak"].head(5):
        assert f"{value:.4g}" in text  # its rows, as the report prints numbers


DASHBOARD = textwrap.dedent('''
    import json, os, sys
    from streamlit.testing.v1 import AppTest
    from streamlit.util import calc_hash
    import dashboards
    os.environ[dashboards.RESULTS_ENV] = sys.argv[1]
    app = AppTest.from_file(str(dashboards.APP), default_timeout=120)
    app.run()
    app._page_hash = calc_hash("toy")  # the page's url path, as a browser would ask for it
    app.run()
    print(json.dumps({"exception": [e.message for e in app.exception], "titles": [t.value for t in app.title],
                      "frames": [d.value["peak"].tolist() for d in app.dataframe if "peak" in d.value.columns]}))
''')


def test_the_dashboard_has_a_page_for_the_plugins_family(toy_run):
    done = subprocess.run([sys.executable, "-c", DASHBOARD, str(toy_run["out"])], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout.strip().splitlines()[-1])
    assert not shown["exception"] and "Toy peaks" in shown["titles"]
    peaks = pd.read_parquet(toy_run["run"] / "toy_peaks.parquet")["peak"].tolist()
    assert shown["frames"] and shown["frames"][0] == pytest.approx(peaks[:len(shown["frames"][0])])
