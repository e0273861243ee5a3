"""Planning: every file indexed once per run, units small and picklable (paths, keys, shapes; no
arrays, no handles), rows in the documented plan order."""

from __future__ import annotations

import dataclasses
import io
import pickle
from collections import Counter
from pathlib import Path

import numpy as np

import lab
import lab.checkpoints.index as index_module
from lab.checkpoints import discover, open_base
from lab.engine.plan import build_plan
from lab.probes.registry import resolve


def test_each_file_is_indexed_once_per_run(tmp_path, monkeypatch, engine_inputs):
    counts: Counter = Counter()
    real = index_module.read_file_tensors

    def counting(path):
        counts[Path(path).resolve()] += 1
        return real(path)

    monkeypatch.setattr(index_module, "read_file_tensors", counting)
    run = lab.analyze(engine_inputs["train"], base=engine_inputs["base"], out=tmp_path, progress=False)
    weights = [p.resolve() for p in engine_inputs["train"].glob("checkpoint-*/model.safetensors")]
    weights.append((engine_inputs["base"] / "model.safetensors").resolve())
    assert len(weights) == 4 and set(counts) == set(weights)
    assert all(n == 1 for n in counts.values()), counts  # three checkpoints share one base: indexed once
    assert run.manifest["status"] == "complete"


def _arrays_or_handles(value, seen=None) -> list:
    """Every ndarray or open file found by walking a unit's dataclass fields, tuples and dicts."""
    found = []
    if isinstance(value, (np.ndarray, io.IOBase)) or hasattr(value, "fileno") or type(value).__module__.startswith(("torch", "safetensors")):
        return [value]
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            found += _arrays_or_handles(getattr(value, f.name))
    elif isinstance(value, (tuple, list)):
        for v in value:
            found += _arrays_or_handles(v)
    elif isinstance(value, dict):
        for v in value.values():
            found += _arrays_or_handles(v)
    return found


def test_units_are_small_picklable_descriptions(engine_inputs):
    checkpoints = discover(engine_inputs["train"]) + discover(engine_inputs["adapters"][0])
    base = open_base(engine_inputs["base"])
    plan = build_plan(checkpoints, base, resolve(None), controls=True, seed=3)
    kinds = Counter(type(u).__name__ for u in plan.units)
    assert kinds == {"ModuleUnit": 3 * 16 + 4, "ControlUnit": len(plan.units) - 52}
    for unit in plan.units:
        assert _arrays_or_handles(unit) == []
        blob = pickle.dumps(unit)
        assert len(blob) < 4000 and pickle.loads(blob) == unit
    assert len({u.key for u in plan.units}) == len(plan.units)  # a key names one unit


def test_rows_follow_the_plan_order(tmp_path, engine_inputs):
    run = lab.analyze([engine_inputs["train"], engine_inputs["adapters"][0]], base=engine_inputs["base"],
                      out=tmp_path, controls=True, progress=False)
    deltas = run.table("deltas")
    # checkpoints in the order given, a training output by step; modules in natural order within each
    assert list(dict.fromkeys(deltas.checkpoint)) == ["checkpoint-10", "checkpoint-20", "checkpoint-30", "adapter0"]
    one = deltas[deltas.checkpoint == "checkpoint-10"].module.tolist()
    layer_of = [int(m.split(".")[2]) if ".layers." in m else -1 for m in one]
    assert [n for n in layer_of if n >= 0] == sorted(n for n in layer_of if n >= 0)
    ent = run.table("entanglement_summary")
    assert list(dict.fromkeys(ent.checkpoint))[-1] == "controls"  # controls come last


def test_inputs_sharing_a_name_are_told_apart_by_their_folder(tmp_path, engine_inputs):
    import shutil

    from lab.errors import InputError

    for parent in ("lora-a", "lora-b"):
        shutil.copytree(engine_inputs["adapters"][0 if parent == "lora-a" else 1], tmp_path / parent / "checkpoint-30")
    run = lab.analyze([tmp_path / "lora-a" / "checkpoint-30", tmp_path / "lora-b" / "checkpoint-30"], out=tmp_path / "out",
                      run="r", progress=False)
    deltas = run.table("deltas")
    assert list(dict.fromkeys(deltas.checkpoint)) == ["lora-a/checkpoint-30", "lora-b/checkpoint-30"]
    assert (deltas.step == 30).all()
    one = deltas.groupby("checkpoint").fro_norm.sum()
    assert one["lora-a/checkpoint-30"] != one["lora-b/checkpoint-30"]  # two different adapters, both read
    try:
        lab.analyze([engine_inputs["adapters"][0]] * 2, out=tmp_path / "out2", progress=False)
    except InputError as e:
        assert "given twice" in str(e)
    else:
        raise AssertionError("the same input twice was accepted")
