"""Probe options from the CLI reach the probes, change the result as documented, are recorded in the
manifest and shown by ``lab probes``; bad options are one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lab.probes import available
from lab.probes.options import OptionError, build_options, parse_assignments
from lab.store import open_run


def _lab(*args):
    return subprocess.run([sys.executable, "-m", "lab.cli", *map(str, args)], capture_output=True, text=True, timeout=600)


def test_set_reaches_the_probe_and_the_manifest(tmp_path, engine_inputs):
    common = ["analyze", engine_inputs["train"] / "checkpoint-10", "--base", engine_inputs["base"], "--out", tmp_path,
              "--quiet", "--modules", r"layers\.0\.self_attn\.q_proj"]
    default = _lab(*common, "--run", "default")
    chosen = _lab(*common, "--run", "chosen", "--set", "spectra.top_k=3", "--set", "spectra.intruder_threshold=0.25",
                  "--targets", "delta,weight")
    assert default.returncode == 0 and chosen.returncode == 0, chosen.stderr
    d, c = open_run(tmp_path / "default"), open_run(tmp_path / "chosen")
    assert d.table("spectra").overlap_k.tolist() == [16]
    spectra = c.table("spectra").set_index("source")
    assert spectra.loc["delta", "overlap_k"] == 3 and spectra.loc["delta", "intruder_threshold"] == 0.25
    assert set(c.table("entanglement_summary").source) == {"delta", "weight"}
    recorded = json.loads((tmp_path / "chosen" / "manifest.json").read_text())["options"]["probe_options"]
    assert recorded["spectra"]["top_k"] == 3 and recorded["spectra"]["intruder_threshold"] == 0.25
    assert recorded["spectra"]["targets"] == ["delta", "weight"] == recorded["entanglement"]["targets"]
    assert d.manifest["options"]["probe_options"]["spectra"]["top_k"] == 16


@pytest.mark.parametrize("bad, says", [
    ("spectra.top_k=many", "expected an integer"),
    ("spectra.nothing=1", "has no option 'nothing'"),
    ("nosuch.top_k=1", "not among the probes run"),
    ("top_k", "expected PROBE.OPTION=VALUE"),
    ("spectra.intruder_threshold=2", "intruder_threshold"),
    ("entanglement.targets=delta,wieght", "unknown target"),
])
def test_bad_options_are_one_line(tmp_path, engine_inputs, bad, says):
    result = _lab("analyze", engine_inputs["adapters"][0], "--out", tmp_path, "--quiet", "--set", bad)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
    assert not (tmp_path / "adapter0").exists()  # refused before any run folder was made


def test_options_parse_to_typed_objects():
    probes = [available()["spectra"], available()["entanglement"]]
    got = build_options(probes, parse_assignments(["spectra.intruder_reference=none", "spectra.top_k=4",
                                                   "entanglement.targets=weight,delta"]))
    assert got["spectra"].intruder_reference is None and got["spectra"].top_k == 4
    assert got["entanglement"].targets == ("weight", "delta")
    with pytest.raises(OptionError):
        build_options(probes, {"spectra": {"top_k": 1.5}})


def test_lab_probes_lists_scopes_and_options():
    result = _lab("probes")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert any(line.startswith("spectra") and "module" in line and "default" in line for line in lines)
    assert any("--set spectra.top_k=VALUE" in line and "default 16" in line for line in lines)
    assert any("--set entanglement.targets=VALUE" in line for line in lines)
