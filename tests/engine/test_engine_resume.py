"""Interrupted runs: SIGKILL part-way leaves an incomplete run whose finished units are durable;
``--resume`` finishes it without recomputing them and equals a clean run; a resume with other
inputs or options is refused in one line; SIGTERM ends a run as Ctrl-C does."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from lab.store import open_run
from lab.store.parts import Parts

PLUGIN = textwrap.dedent('''
    """A probe that takes its time, so a run can be interrupted part-way."""
    import time
    from lab.probes.registry import Probe, register

    def _slow(delta, options, ctx):
        time.sleep(0.15)
        return {}

    register(Probe("slow", (), _slow, default=False, description="sleeps 0.15 s per module"))
''')


def _lab(*args, cwd=None, wait=True):
    cmd = [sys.executable, "-m", "lab.cli", *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def _args(engine_inputs, plugin, out, *extra):
    return ["analyze", engine_inputs["train"], "--base", engine_inputs["base"], "--plugin", plugin,
            "--probes", "deltas,entanglement,spectra,slow", "--controls", "--out", out, "--run", "r", "--quiet", *extra]


def _wait_for_parts(folder: Path, n: int, proc, timeout: float = 300) -> None:
    parts = Parts(folder)  # read as the run writes it: a record still being appended is not counted
    t0 = time.time()
    while time.time() - t0 < timeout:
        if len(parts.done()) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.02)
    pytest.fail("no parts appeared")


def _interrupt(args, folder: Path, parts: int, sig=signal.SIGKILL):
    """Start ``lab`` with ``args`` and send it ``sig`` once ``parts`` units are stored; its exit status."""
    proc = _lab(*args, wait=False)
    _wait_for_parts(folder, parts, proc)
    proc.send_signal(sig)
    return proc.wait(timeout=120)


def _same_tables(a, b) -> None:
    assert a.tables() == b.tables()
    for t in a.tables():
        pd.testing.assert_frame_equal(a.table(t), b.table(t), check_exact=True, obj=t)


@pytest.fixture()
def plugin(tmp_path):
    path = tmp_path / "slow_probe.py"
    path.write_text(PLUGIN)
    return path


def test_sigkill_then_resume_equals_a_clean_run(tmp_path, engine_inputs, plugin):
    out = tmp_path / "interrupted"
    _interrupt(_args(engine_inputs, plugin, out), out / "r", 5)
    folder = out / "r"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and not list(folder.glob("*.parquet"))
    parts = Parts(folder)
    finished = {key: parts.meta(key) for key in parts.done()}
    assert 5 <= len(finished) < 3 * 16 + 5

    resumed = _lab(*_args(engine_inputs, plugin, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    run = open_run(folder)
    assert run.complete
    units = {u["key"]: u for u in run.manifest["units"]}
    for key, meta in finished.items():  # finished units were not recomputed: same worker, same timing
        assert units[key]["worker"] == meta["worker"] and units[key]["seconds"] == meta["seconds"]
    assert len({u["worker"] for u in units.values()}) == 2  # the killed process and the resuming one

    clean = _lab(*_args(engine_inputs, plugin, tmp_path / "clean"))
    assert clean.returncode == 0, clean.stderr
    _same_tables(run, open_run(tmp_path / "clean" / "r"))


def test_resume_refuses_changed_inputs_or_options(tmp_path, engine_inputs, plugin):
    train = tmp_path / "train"
    shutil.copytree(engine_inputs["train"], train)
    inputs = dict(engine_inputs, train=train)
    out = tmp_path / "out"
    _interrupt(_args(inputs, plugin, out), out / "r", 2)

    other = _lab(*_args(inputs, plugin, out, "--resume", "--seed", "7"))
    assert other.returncode == 2 and other.stderr.count("\n") == 1, other.stderr
    assert "cannot resume" in other.stderr and "seed" in other.stderr and "Traceback" not in other.stderr

    config = train / "checkpoint-20" / "config.json"
    config.write_text(config.read_text() + " ")  # same model, other bytes: the hash differs
    changed = _lab(*_args(inputs, plugin, out, "--resume"))
    assert changed.returncode == 2 and changed.stderr.count("\n") == 1, changed.stderr
    assert "input files differ" in changed.stderr
    assert json.loads((out / "r" / "manifest.json").read_text())["status"] == "incomplete"


def test_sigterm_stops_like_ctrl_c_and_resume_finishes(tmp_path, engine_inputs, plugin):
    out = tmp_path / "out"
    assert _interrupt(_args(engine_inputs, plugin, out), out / "r", 2, signal.SIGTERM) != 0
    manifest = json.loads((out / "r" / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and manifest["error"] == "interrupted"
    assert _lab(*_args(engine_inputs, plugin, out, "--resume")).returncode == 0
    assert open_run(out / "r").complete
    again = _lab(*_args(engine_inputs, plugin, out, "--resume"))  # nothing left to do: the run as it is
    assert again.returncode == 0 and open_run(out / "r").complete


def test_a_run_without_resume_is_not_silently_replaced(tmp_path, engine_inputs, plugin):
    out = tmp_path / "out"
    _interrupt(_args(engine_inputs, plugin, out), out / "r", 1)
    again = _lab(*_args(engine_inputs, plugin, out))
    assert again.returncode == 2 and "--resume" in again.stderr and again.stderr.count("\n") == 1
    assert Parts(out / "r").done()  # the finished units are still there to resume


def test_dask_run_killed_then_resumed_on_dask_equals_a_clean_run(tmp_path, engine_inputs, plugin):
    """SIGKILL of a ``--workers 2`` run: its worker processes go with it (none is left running), the units
    the workers had finished are kept, and ``--resume`` on a new local cluster finishes the run equal to a
    clean serial one."""
    import psutil

    out = tmp_path / "interrupted"
    proc = _lab(*_args(engine_inputs, plugin, out, "--workers", "2"), wait=False)
    _wait_for_parts(out / "r", 5, proc)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=120)
    gone, alive = psutil.wait_procs(children, timeout=60)
    for p in alive:  # leave no process behind even when the assertion below fails
        p.kill()
    assert not alive, f"worker processes outlived the killed driver: {alive}"

    folder = out / "r"
    parts = Parts(folder)
    finished = {key: parts.meta(key) for key in parts.done()}
    assert json.loads((folder / "manifest.json").read_text())["status"] == "incomplete" and len(finished) >= 5
    assert all(meta["worker"].startswith("tcp://127.0.0.1:") for meta in finished.values())  # the workers' units

    resumed = _lab(*_args(engine_inputs, plugin, out, "--resume", "--workers", "2"))
    assert resumed.returncode == 0, resumed.stderr
    run = open_run(folder)
    assert run.complete and run.manifest["execution"] == "dask: 2 local workers"
    units = {u["key"]: u for u in run.manifest["units"]}
    for key, meta in finished.items():  # kept, not recomputed
        assert units[key]["worker"] == meta["worker"] and units[key]["seconds"] == meta["seconds"]
    clean = _lab(*_args(engine_inputs, plugin, tmp_path / "clean"))
    assert clean.returncode == 0, clean.stderr
    _same_tables(run, open_run(tmp_path / "clean" / "r"))
