"""The pair scope: one unit per pair of checkpoints in run order, the base prepared once for all of
them, each unit handed both checkpoints as models (loaded on use) and the rows identified by 'a:b'."""

from __future__ import annotations

import uuid
from itertools import combinations

import numpy as np
import pytest
import torch

import lab
from lab.engine.plan import build_plan
from lab.engine.units import PairUnit, PrepareUnit
from lab.probes.registry import _REGISTRY, Probe, register
from lab.store.schema import TABLES, _c, declare


def _prepare(base, options, ctx):
    with torch.no_grad():
        out = base.load()(input_ids=torch.arange(8)[None], output_hidden_states=True)
    return {"norm": float(out.hidden_states[-1].norm()), "token": uuid.uuid4().hex}


def _pair(subject, options, ctx):
    norms = []
    for member in (subject.first, subject.second):
        with torch.no_grad():
            out = member.load()(input_ids=torch.arange(8)[None], output_hidden_states=True)
        norms.append(float(out.hidden_states[-1].norm()))
    return {"test_pair_rows": [{"first": subject.first.checkpoint, "second": subject.second.checkpoint,
                                "diff": norms[0] - norms[1], "base_norm": subject.prepared["norm"],
                                "token": subject.prepared["token"]}]}


PROBE = Probe("test_pair", ("test_pair_rows",), _pair, scope="pair", prepare=_prepare, default=False)


@pytest.fixture()
def pair_probe():
    declare("test_pair_rows", "test", _c("first", "string", "a"), _c("second", "string", "b"),
            _c("diff", "float64", "hidden norm of a minus b's"), _c("base_norm", "float64", "the base's"),
            _c("token", "string", "prepare's token"))
    register(PROBE)
    yield PROBE
    _REGISTRY.pop(PROBE.name, None)
    TABLES.pop("test_pair_rows", None)


def test_a_plan_has_one_pair_unit_per_pair_in_run_order_and_one_base_preparation(engine_inputs, pair_probe):
    from lab.checkpoints import discover, open_base

    ckpts = [c for p in [engine_inputs["train"], *engine_inputs["adapters"]] for c in discover(p)]
    plan = build_plan(ckpts, open_base(engine_inputs["base"]), [pair_probe])
    pairs = [u for u in plan.units if isinstance(u, PairUnit)]
    assert [(u.first.name, u.second.name) for u in pairs] == [(a.name, b.name) for a, b in combinations(ckpts, 2)]
    assert len(plan.prepare) == 1 and isinstance(plan.prepare[0], PrepareUnit)
    assert all(u.prepared == (plan.prepare[0].key,) for u in pairs)
    assert len({u.key for u in pairs}) == len(pairs)


def test_pair_rows_come_from_both_models_with_the_base_prepared_once(tmp_path, engine_inputs, pair_probe):
    inputs = engine_inputs["adapters"] + [engine_inputs["train"] / "checkpoint-10"]
    run = lab.analyze(inputs, base=engine_inputs["base"], out=tmp_path, run="pairs", probes=["test_pair"],
                      progress=False)
    t = run.table("test_pair_rows")
    assert len(t) == 3 and t["token"].nunique() == 1  # three pairs, one preparation
    assert list(t["checkpoint"]) == [f"{a}:{b}" for a, b in zip(t["first"], t["second"])]
    assert t[["module", "role", "step"]].isna().all().all()
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    def norm(path):
        model = LlamaForCausalLM.from_pretrained(engine_inputs["base"], attn_implementation="eager")
        if (path / "adapter_config.json").is_file():
            model = PeftModel.from_pretrained(model, path)
        else:
            model = LlamaForCausalLM.from_pretrained(path, attn_implementation="eager")
        with torch.no_grad():
            return float(model.eval()(input_ids=torch.arange(8)[None], output_hidden_states=True).hidden_states[-1].norm())

    paths = {p.name: p for p in inputs}
    for r in t.itertuples():
        assert r.diff == pytest.approx(norm(paths[r.first]) - norm(paths[r.second]), rel=1e-6, abs=1e-6)
    assert np.allclose(t["base_norm"], norm(engine_inputs["base"]), rtol=1e-6)
