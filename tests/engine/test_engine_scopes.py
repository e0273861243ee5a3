"""A probe of each scope (module, model, group), registered from test code, runs serially and on a
real Dask cluster with equal rows; the base's outputs are prepared once per run; a worker killed
mid-run has its unit retried; a worker that cannot see an input says which worker and path."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from distributed import Client

import lab
from lab.checkpoints import discover
from lab.engine.execute import Work, run_unit
from lab.engine.executors import DaskExecutor
from lab.engine.plan import build_plan
from lab.engine.units import CheckpointRef, ModelUnit
from lab.errors import InputError
from lab.probes.options import build_options
from lab.probes.registry import ProbeContext, resolve

SCOPED = ["deltas", "entanglement", "spectra", "test_module", "test_model", "test_group"]


def _tables(run) -> dict[str, pd.DataFrame]:
    return {t: run.table(t).drop(columns=["run"]) for t in run.tables()}


def _assert_same_rows(a, b) -> None:
    ta, tb = _tables(a), _tables(b)
    assert sorted(ta) == sorted(tb)
    for name in ta:
        pd.testing.assert_frame_equal(ta[name], tb[name], check_exact=name != "test_model_rows", obj=name)


def _inputs(engine_inputs):
    return [engine_inputs["train"], *engine_inputs["adapters"]]


def test_every_scope_runs_serially_and_on_dask_with_equal_rows(tmp_path, engine_inputs, scope_probe_set, dask_cluster):
    kwargs = dict(base=engine_inputs["base"], probes=SCOPED, controls=True, progress=False)
    serial = lab.analyze(_inputs(engine_inputs), out=tmp_path / "serial", run="r", **kwargs)
    dask = lab.analyze(_inputs(engine_inputs), out=tmp_path / "dask", run="r", scheduler=dask_cluster.scheduler_address,
                       **kwargs)
    assert serial.manifest["execution"] == "serial" and dask.manifest["execution"].startswith("dask")
    assert all(u["worker"].startswith("tcp://127.0.0.1:") for u in dask.manifest["units"])  # ran on the workers
    model = serial.table("test_model_rows")
    assert len(model) == 5 and model.token.nunique() == 1  # prepare ran once for five checkpoints
    assert dask.table("test_model_rows").token.nunique() == 1
    # an adapter changes the model's output (PEFT applied to the base), a full checkpoint too
    assert (model.value.abs() > 0).all()
    group = serial.table("test_group_rows")
    q = group[group.module == "model.layers.0.self_attn.q_proj"].iloc[0]
    assert q.n == 5 and q.members == "checkpoint-10,checkpoint-20,checkpoint-30,adapter0,adapter1"
    assert q.mean_fro <= q.fro_mean + 1e-12  # the norm of a mean is at most the mean of norms
    for run in (serial, dask):  # the token differs between the runs; everything else must not
        run_model = run.table("test_model_rows")
        assert run_model.value.tolist() == pytest.approx(model.value.tolist(), rel=1e-6)
    ta = {k: v for k, v in _tables(serial).items() if k != "test_model_rows"}
    tb = {k: v for k, v in _tables(dask).items() if k != "test_model_rows"}
    for name in ta:
        pd.testing.assert_frame_equal(ta[name], tb[name], obj=name)


def test_a_worker_killed_mid_run_has_its_unit_retried(tmp_path, engine_inputs, scope_probe_set, dask_cluster):
    marker = tmp_path / "killed"
    kwargs = dict(base=engine_inputs["base"], probes=["deltas", "test_module"], progress=False)
    dask = lab.analyze(engine_inputs["train"], out=tmp_path / "dask", run="r", scheduler=dask_cluster.scheduler_address,
                       options={"test_module": {"kill_marker": str(marker)}}, **kwargs)
    killed = int(marker.read_text())  # a worker process did die running a unit: which one
    assert killed != os.getpid()
    with Client(dask_cluster.scheduler_address) as client:  # the nanny restarts it: wait, don't race it
        client.wait_for_workers(2, timeout=120)
        pids = set(client.run(os.getpid).values())
    assert len(pids) == 2 and killed not in pids
    assert dask.complete
    serial = lab.analyze(engine_inputs["train"], out=tmp_path / "serial", run="r", **kwargs)
    assert len(dask.table("test_module_rows")) == 3 * 16
    _assert_same_rows(serial, dask)


def test_a_worker_that_cannot_see_an_input_names_itself_and_the_path(engine_inputs, dask_cluster):
    missing = str(engine_inputs["root"] / "only-on-the-client")
    unit = ModelUnit("model-x", CheckpointRef("x", None, missing, "full"), None)
    with Client(dask_cluster.scheduler_address) as client:
        future = client.submit(run_unit, unit, Work("r", (), {}, ProbeContext()), None, pure=False)
        with pytest.raises(InputError) as e:
            future.result()
    message = str(e.value)
    assert "worker tcp://127.0.0.1:" in message and missing in message and "\n" not in message


def test_local_cluster_from_workers_option(tmp_path, engine_inputs):
    """--workers 2 on 3 checkpoints × 14 modules: the units are queued to both workers as they free up
    (Dask's root-task queuing), so each of the two ran some, and the tables equal a serial run's."""
    kwargs = dict(base=engine_inputs["base"], probes=["deltas"], progress=False)
    run = lab.analyze(engine_inputs["train"], out=tmp_path / "dask", workers=2, **kwargs)
    assert run.manifest["execution"] == "dask: 2 local workers" and run.complete
    units = run.manifest["units"]
    by_worker = pd.Series([u["worker"] for u in units]).value_counts()
    assert len(units) >= 40 and len(by_worker) == 2 and by_worker.min() >= 1, by_worker.to_dict()
    assert all(w.startswith("tcp://127.0.0.1:") for w in by_worker.index), by_worker.to_dict()
    serial = lab.analyze(engine_inputs["train"], out=tmp_path / "serial", **kwargs)
    _assert_same_rows(serial, run)


def _worker_state() -> dict:
    import os
    import sys

    return {"env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")},
            "torch": "torch" in sys.modules, "probes": "lab.probes" in sys.modules}


def test_local_workers_are_warmed_up_single_threaded_and_keep_glibc_malloc(engine_inputs):
    """What --workers starts: one-thread pools, lab imported before the first unit, and neither torch
    (seconds to import; safetensors are read without it) nor Dask's 64 KiB malloc trim threshold."""
    probes = resolve(["deltas"])
    base = lab.checkpoints.open_base(engine_inputs["base"])
    unit = build_plan(discover(engine_inputs["train"] / "checkpoint-10"), base, probes).units[0]
    executor = DaskExecutor(workers=1)
    with executor:
        [state] = executor._client.run(_worker_state).values()
        [result] = list(executor.run([unit], Work("r", tuple(probes), build_options(probes, None)), []))
        [after] = executor._client.run(_worker_state).values()
    executor.close()
    assert state == {"env": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MALLOC_TRIM_THRESHOLD_": None},
                     "torch": False, "probes": True}
    assert result.rows["deltas"] and not after["torch"]  # a unit on a safetensors checkpoint needs no torch
