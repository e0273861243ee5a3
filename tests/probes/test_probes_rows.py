"""The entanglement and spectra probes on real PEFT adapters and a real full fine-tune: rows equal
independent computations on PEFT's own ΔW, have exactly the declared columns, and store cleanly."""

import copy
import math

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer

import builders
from lab.deltas import Delta, Factors
from lab.engine.controls import control_delta, plan_controls
from lab.engine.execute import Work, run_unit
from lab.probes import available
from lab.probes.options import build_options
from lab.probes.entanglement import entanglement_profile
from lab.kernels.page import page_entropy
from lab.probes.registry import ProbeContext
from lab.probes.spectra import SpectraOptions
from lab.store import RunWriter, open_run
from lab.store.schema import ID_COLUMNS, TABLES

IDS = {c.name for c in ID_COLUMNS}
TABLES_OF = {"entanglement": ("entanglement", "entanglement_summary"), "spectra": ("spectra", "singular_values")}


@pytest.fixture(scope="module")
def lora_deltas():
    """(Delta from the adapter's factors, PEFT's get_delta_weight in float64) per adapted module."""
    model = builders.tiny_llama(seed=0)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    peft_model = builders.randomize_lora(get_peft_model(model, cfg), seed=3)
    reference = copy.deepcopy(peft_model).double()
    out = []
    for name, module in reference.base_model.model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        B = module.lora_B["default"].weight.detach().numpy()
        A = module.lora_A["default"].weight.detach().numpy()
        base = module.get_base_layer().weight.detach().numpy()
        delta = Delta(name, int(name.split(".")[2]), name.split(".")[-1][0], "lora",
                      Factors(B.copy(), A.copy(), float(module.scaling["default"])), base=base.copy())
        out.append((delta, module.get_delta_weight("default").detach().numpy()))
    assert len(out) == 6
    return out


@pytest.fixture(scope="module")
def full_delta():
    """A dense ΔW of a real BERT module: a perturbed copy minus the original."""
    base = builders.tiny_bert(seed=0)
    tuned = builders.perturb(copy.deepcopy(base), seed=1)
    W = base.encoder.layer[0].intermediate.dense.weight.detach().double().numpy()
    Wt = tuned.encoder.layer[0].intermediate.dense.weight.detach().double().numpy()
    return Delta("encoder.layer.0.intermediate.dense", 0, "up", "full", Wt - W, base=W)


def _run(probe, delta, targets=None, options=None, seed=0):
    """The probe on one delta, with its options built as the CLI and lab.analyze build them."""
    given = dict(options or {})
    if targets is not None:
        given[probe] = {**given.get(probe, {}), "targets": targets}
    p = available()[probe]
    return p.run(delta, build_options([p], {probe: given[probe]} if probe in given else {})[probe], ProbeContext(seed=seed))


def _columns_declared(rows_by_table, probe, extra=frozenset()):
    assert set(rows_by_table) == set(TABLES_OF[probe])
    for table, rows in rows_by_table.items():
        declared = set(TABLES[table].names)
        for row in rows:
            assert set(row) == declared - IDS | extra, table


def test_entanglement_rows_equal_the_profile_of_peft_delta(lora_deltas):
    for delta, peft_dense in lora_deltas:
        rows = _run("entanglement", delta, targets=("delta", "weight"))
        _columns_declared(rows, "entanglement")
        by_source = {s: [r for r in rows["entanglement"] if r["source"] == s] for s in ("delta", "weight")}
        for source, matrix in (("delta", peft_dense), ("weight", delta.base)):
            ref = entanglement_profile(matrix)  # the dense path on PEFT's own matrices
            got = by_source[source]
            assert [r["cut"] for r in got] == ref.cuts.tolist()
            assert np.allclose([r["entropy"] for r in got], ref.entropy, atol=1e-9)
            assert np.allclose([r["renyi2"] for r in got], ref.renyi2, atol=1e-9)
            assert np.allclose([r["page_entropy"] for r in got], page_entropy(ref.d_left, ref.d_right))
        summary = {r["source"]: r for r in rows["entanglement_summary"]}
        assert summary["delta"]["rank_bound"] == 4 and summary["weight"]["rank_bound"] == min(delta.shape)
        assert summary["delta"]["valley_entropy"] <= math.log(4) + 1e-12


def test_spectra_rows_equal_numpy_on_peft_delta(lora_deltas):
    options = {"spectra": {"top_k": 3, "intruder_top": 4}}
    for delta, peft_dense in lora_deltas:
        rows = _run("spectra", delta, targets=("delta", "weight"), options=options)
        _columns_declared(rows, "spectra")
        spec = {r["source"]: r for r in rows["spectra"]}
        s = np.linalg.svd(peft_dense, compute_uv=False)
        d = spec["delta"]
        assert d["fro_norm"] == pytest.approx(np.linalg.norm(peft_dense), rel=1e-9)
        assert d["spectral_norm"] == pytest.approx(s[0], rel=1e-9)
        assert d["numerical_rank"] == np.linalg.matrix_rank(peft_dense) == 4
        assert d["overlap_k"] == 3 and 0.0 <= d["overlap_left"] <= 1.0 and d["intruder_top"] == 4
        assert d["overlap_left_random"] == pytest.approx(3 / delta.shape[0])
        w = spec["weight"]
        assert w["spectral_norm"] == pytest.approx(np.linalg.norm(delta.base, 2), rel=1e-9)
        assert w["overlap_k"] is None and w["intruder_count"] is None  # W is not compared with itself
        sv = [r for r in rows["singular_values"] if r["source"] == "delta"]
        assert np.allclose([r["sigma"] for r in sv], s[:4], rtol=1e-9)


def test_spectra_options_may_come_as_a_dict_text_or_object(lora_deltas):
    delta, _ = lora_deltas[0]
    for given in ({"top_k": 2, "intruder_threshold": 0.3}, {"top_k": "2", "intruder_threshold": "0.3"},
                  SpectraOptions(top_k=2, intruder_threshold=0.3)):
        p = available()["spectra"]
        rows = p.run(delta, build_options([p], {"spectra": given})["spectra"], ProbeContext())
        assert rows["spectra"][0]["overlap_k"] == 2 and rows["spectra"][0]["intruder_threshold"] == 0.3


def test_full_finetune_delta(full_delta):
    for probe in ("entanglement", "spectra"):
        rows = _run(probe, full_delta)
        _columns_declared(rows, probe)
    rows = _run("spectra", full_delta)
    assert rows["spectra"][0]["rank_bound"] == min(full_delta.shape)
    assert len(rows["singular_values"]) == min(full_delta.shape)
    ent = _run("entanglement", full_delta)["entanglement"]
    assert np.allclose([r["entropy"] for r in ent], entanglement_profile(full_delta.dense).entropy)


def _control_rows(shapes, seed, probes=("entanglement", "spectra")):
    """Rows of the run's control units for ``shapes``, as the engine runs them."""
    chosen = tuple(available()[p] for p in probes)
    work = Work("t", chosen, build_options(chosen, {}), ProbeContext(seed=seed))
    out = {}
    for unit in plan_controls(shapes, seed, stream_bytes=None):
        for table, rows in run_unit(unit, work).rows.items():
            out.setdefault(table, []).extend(rows)
    return out


def test_controls_rows_label_themselves_and_are_seeded():
    shapes = [(48, 32, 4), (48, 32, 32), (32, 48, 4)]
    rows = _control_rows(shapes, seed=5)
    again = _control_rows(list(reversed(shapes)), seed=5)
    other = _control_rows(shapes, seed=6)
    for probe in ("entanglement", "spectra"):
        first = TABLES_OF[probe][0]
        _columns_declared({t: rows[t] for t in TABLES_OF[probe]}, probe, extra=IDS)
        key = lambda r: (r["module"], r.get("cut", 0))  # noqa: E731
        assert sorted(rows[first], key=key) == sorted(again[first], key=key)
        assert sorted(rows[first], key=key) != sorted(other[first], key=key)
        modules = {(r["module"], r["source"], r["role"], r["layer"], r["checkpoint"]) for r in rows[first]}
        assert modules == {("random 48x32", "random", "random", None, "controls"),
                           ("random 32x48", "random", "random", None, "controls"),
                           ("random lora 48x32 r4", "random_lora", "random", None, "controls"),
                           ("random lora 32x48 r4", "random_lora", "random", None, "controls")}
    lora = [r for r in rows["entanglement_summary"] if r["source"] == "random_lora"]
    assert lora and all(r["valley_entropy"] <= math.log(4) + 1e-12 for r in lora)
    assert "deltas" not in rows  # the deltas table describes real updates only


def test_rows_round_trip_through_the_store(tmp_path, lora_deltas):
    delta, _ = lora_deltas[0]
    writer = RunWriter(tmp_path, "t")
    ids = {"run": "t", "checkpoint": "adapter", "step": None, "module": delta.module, "layer": delta.layer,
           "role": delta.role}
    rows = {}
    for probe in ("entanglement", "spectra"):
        for table, got in _run(probe, delta, targets=("delta", "weight")).items():
            rows.setdefault(table, []).extend({**ids, **r} for r in got)
    writer.add_unit("unit-a", rows)
    writer.add_unit("controls", _control_rows([(*delta.shape, 4)], seed=0))
    writer.finish(["unit-a", "controls"])
    run = open_run(tmp_path / "t")
    ent = run.table("entanglement")
    assert list(ent.columns) == TABLES["entanglement"].names
    assert set(ent["source"]) == {"delta", "weight", "random", "random_lora"}
    assert run.table("spectra")["overlap_k"].notna().sum() == 1


def test_zero_and_nonfinite_updates_give_honest_rows():
    zero = Delta("m", 0, "q", "lora", Factors(np.zeros((12, 2)), np.ones((2, 18)), 2.0))
    ent = _run("entanglement", zero)
    assert all(math.isnan(r["entropy"]) for r in ent["entanglement"])
    spec = _run("spectra", zero)["spectra"][0]
    assert (spec["fro_norm"], spec["numerical_rank"]) == (0.0, 0)
    bad = np.ones((12, 18))
    bad[0, 0] = np.nan
    nan = Delta("m", 0, "q", "full", bad, base=np.ones((12, 18)))
    ent = _run("entanglement", nan)
    _columns_declared(ent, "entanglement")
    assert all(math.isnan(r["entropy"]) for r in ent["entanglement"])
    spec = _run("spectra", nan)
    _columns_declared(spec, "spectra")
    assert spec["spectra"][0]["fro_norm"] is None and spec["singular_values"] == []


def test_probes_are_registered_as_defaults():
    probes = available()
    for name in ("entanglement", "spectra"):
        assert probes[name].default and probes[name].on_controls and probes[name].scope == "module"
        assert set(probes[name].tables) == set(TABLES_OF[name])
    assert torch.get_default_dtype() == torch.float32  # nothing here changed global torch state
