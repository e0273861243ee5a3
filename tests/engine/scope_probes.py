"""Probes of every scope, registered from test code (as a user's notebook would), with their tables.

They are small but real: the module probe sums a Delta's entries (dense, factored or streamed),
the model probe runs the model on fixed token ids, the group probe compares an update's mean with
its members. ``install()`` declares their tables and registers them; ``uninstall()`` undoes both
so the schema the README documents is unchanged for the other tests.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lab.probes.registry import _REGISTRY, Probe, field_help, register
from lab.store.schema import TABLES, _c, declare


@dataclass(frozen=True)
class ModuleOptions:
    factor: float = field_help("multiplies every value", default=1.0)
    kill_marker: str = field_help("a path: the first unit on a Dask worker to create it kills its own worker process",
                                  default="")


def _in_dask_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):  # ValueError: not running in a worker's task
        return False
    return True


def _claim(marker: str) -> bool:
    """Create ``marker`` atomically: exactly one process ever gets True (two workers checking for a
    missing file at once would both have killed themselves, and with them every copy of the work)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def _module(delta, options: ModuleOptions, ctx):
    # only ever a Dask worker's process dies, never the driver's (the test process in a serial run)
    if options.kill_marker and _in_dask_worker() and _claim(options.kill_marker):
        os.kill(os.getpid(), 9)  # a worker dying mid-unit
    total = float(delta.to_dense().sum()) if not delta.streamed else float("nan")
    return {"test_module_rows": [{"value": options.factor * total, "rows_seen": delta.shape[0]}]}


def _prepare(base, options, ctx):
    import torch

    with torch.no_grad():
        out = base.load()(input_ids=torch.arange(8)[None], output_hidden_states=True)
    # a token unique to this call: every checkpoint's rows carry it when prepare ran once per run
    return {"norm": float(out.hidden_states[-1].norm()), "token": uuid.uuid4().hex}


def _model(subject, options, ctx):
    import torch

    with torch.no_grad():
        out = subject.load()(input_ids=torch.arange(8)[None], output_hidden_states=True)
    norm = float(out.hidden_states[-1].norm())
    return {"test_model_rows": [{"value": norm - subject.prepared["norm"], "token": subject.prepared["token"]}]}


def _group(subject, options, ctx):
    dense = [d.to_dense() for d in subject.deltas]
    mean = np.mean(dense, axis=0)
    return {"test_group_rows": [{"members": ",".join(subject.members), "n": len(dense),
                                 "mean_fro": float(np.linalg.norm(mean)),
                                 "fro_mean": float(np.mean([np.linalg.norm(d) for d in dense]))}]}


PROBES = (
    Probe("test_module", ("test_module_rows",), _module, options=ModuleOptions, default=False),
    Probe("test_model", ("test_model_rows",), _model, scope="model", prepare=_prepare, default=False),
    Probe("test_group", ("test_group_rows",), _group, scope="group", default=False),
)


def install() -> None:
    declare("test_module_rows", "test", _c("value", "float64", "sum of ΔW"), _c("rows_seen", "int64", "rows"))
    declare("test_model_rows", "test", _c("value", "float64", "hidden norm minus the base's"),
            _c("token", "string", "prepare's token"))
    declare("test_group_rows", "test", _c("members", "string", "members"), _c("n", "int64", "members"),
            _c("mean_fro", "float64", "‖mean ΔW‖"), _c("fro_mean", "float64", "mean ‖ΔW‖"))
    for p in PROBES:
        register(p)


def uninstall() -> None:
    for p in PROBES:
        _REGISTRY.pop(p.name, None)
        for t in p.tables:
            TABLES.pop(t, None)
