"""The msu probe on real PEFT adapters (plain, rsLoRA with rank/alpha patterns, GPT-2 fan_in_fan_out,
DoRA), against numpy on PEFT's own factors and get_delta_weight."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer

import builders
import lab
from lab.checkpoints import discover, iter_deltas
from lab.deltas import Factors
from lab.probes.msu import permutation_errors, units

VARIANTS = {
    "plain": (builders.tiny_llama, dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])),
    "rslora_patterns": (builders.tiny_llama, dict(r=4, lora_alpha=8, use_rslora=True, target_modules=["q_proj", "v_proj", "down_proj"],
                                                  rank_pattern={"v_proj": 6}, alpha_pattern={"down_proj": 3.0})),
    "gpt2_fan_in_fan_out": (builders.tiny_gpt2, dict(r=4, lora_alpha=4, fan_in_fan_out=True, target_modules=["c_attn", "c_fc"])),
}


def _adapter(tmp_path, variant, seed=2):
    make, kwargs = VARIANTS[variant]
    model = get_peft_model(make(seed=0), LoraConfig(**kwargs))
    builders.randomize_lora(model, seed=seed)
    path = tmp_path / variant
    model.save_pretrained(path)
    return path, model


def _peft_units(model):
    """Per PEFT module (lab's name): the dense units s·b_i·a_iᵀ in the (out, in) layout and PEFT's ΔW."""
    pm = copy.deepcopy(model).double()
    out = {}
    for name, m in pm.base_model.model.named_modules():
        if isinstance(m, LoraLayer) and "default" in m.lora_A:
            B = m.lora_B["default"].weight.detach().numpy()
            A = m.lora_A["default"].weight.detach().numpy()
            s = float(m.scaling["default"])
            delta = m.get_delta_weight("default").detach().numpy()
            delta = delta.T if getattr(m, "fan_in_fan_out", False) else delta
            out[name] = ([s * np.outer(B[:, i], A[i]) for i in range(A.shape[0])], delta)
    return out


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_msu_units_match_peft(tmp_path, variant):
    path, model = _adapter(tmp_path, variant)
    reference = _peft_units(model)
    seen = 0
    for delta in iter_deltas(discover(path)[0]):
        whole = delta.module.rsplit(".", 1)[0] if delta.module.endswith((".q", ".k", ".v")) else delta.module
        unit_list, peft_delta = reference[whole]
        if whole != delta.module:  # GPT-2's c_attn: lab splits q, k, v by rows
            n = peft_delta.shape[0] // 3
            start = "qkv".index(delta.module[-1]) * n
            unit_list = [U[start:start + n] for U in unit_list]
            peft_delta = peft_delta[start:start + n]
        u = units(delta.factors)
        total = np.linalg.norm(peft_delta)
        assert u.fro_norm == pytest.approx(total, rel=1e-10)
        np.testing.assert_allclose(u.contribution, [np.linalg.norm(U) for U in unit_list], rtol=1e-10)
        inner = np.array([np.sum(U * peft_delta) for U in unit_list]) / total ** 2
        np.testing.assert_allclose(u.energy_share, inner, rtol=1e-8, atol=1e-12)
        assert u.energy_share.sum() == pytest.approx(1.0, abs=1e-12)
        own = np.array([np.linalg.norm(U) ** 2 for U in unit_list])
        p = own / own.sum()
        assert u.effective_units == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-10)
        assert u.cross_energy == pytest.approx((total ** 2 - own.sum()) / total ** 2, rel=1e-8, abs=1e-12)
        A = delta.factors.A / np.linalg.norm(delta.factors.A, axis=1, keepdims=True)
        c = np.abs(A @ A.T)[np.triu_indices(A.shape[0], 1)]
        assert u.cos_a_max == pytest.approx(c.max()) and u.cos_a_mean == pytest.approx(c.mean())
        assert permutation_errors(delta.factors, 5, seed=1).max() < 1e-13
        seen += 1
    assert seen >= 4


def test_permutation_error_sees_a_broken_permutation():
    """The check is not vacuous: permuting B's columns without A's rows is caught."""
    rng = np.random.default_rng(0)
    f = Factors(rng.normal(size=(40, 6)), rng.normal(size=(6, 30)), 0.5)
    assert permutation_errors(f, 4).max() < 1e-14
    p = np.roll(np.arange(6), 1)
    broken = Factors(f.B[:, p], f.A, f.scale)
    from lab.probes.msu import difference_norms

    fro, _ = difference_norms([f.scale * f.B, -f.scale * broken.B], [f.A, f.A])
    assert fro / f.fro_norm() == pytest.approx(np.linalg.norm(f.to_dense() - broken.to_dense()) / np.linalg.norm(f.to_dense()), rel=1e-10)
    assert fro / f.fro_norm() > 0.1


def test_msu_probe_through_analyze(tmp_path):
    path, model = _adapter(tmp_path, "rslora_patterns")
    run = lab.analyze(path, out=tmp_path / "out", probes=["msu"], options={"msu": {"permutations": 3}}, progress=False)
    msu = run.table("msu").set_index("module")
    reference = _peft_units(model)
    assert sorted(msu.index) == sorted(reference)
    assert (msu.permutation_error_max < 1e-13).all() and (msu.permutations == 3).all()
    assert msu.loc["model.layers.0.self_attn.v_proj", "rank"] == 6
    unit_rows = run.table("msu_units")
    for module, group in unit_rows.groupby("module"):
        assert len(group) == msu.loc[module, "rank"]
        assert group.energy_share.sum() == pytest.approx(1.0, abs=1e-12)
        assert sorted(group.order) == list(range(1, len(group) + 1))
    # unit × unit similarity: every pair i < j, cosines of PEFT's own lora_A rows and lora_B columns
    from lab.present.figures.msu import unit_similarity_matrix

    similar = run.table("msu_similarity")
    layers = {name.removeprefix("base_model.model."): m for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    for module, group in similar.groupby("module"):
        r = int(msu.loc[module, "rank"])
        assert len(group) == r * (r - 1) // 2 and (group.unit_i < group.unit_j).all()
        A = layers[module].lora_A["default"].weight.detach().double().numpy()
        B = layers[module].lora_B["default"].weight.detach().double().numpy()
        cos_a = (A @ A.T) / np.outer(np.linalg.norm(A, axis=1), np.linalg.norm(A, axis=1))
        cos_b = (B.T @ B) / np.outer(np.linalg.norm(B, axis=0), np.linalg.norm(B, axis=0))
        i, j = group.unit_i.to_numpy(), group.unit_j.to_numpy()
        np.testing.assert_allclose(group.cos_a, cos_a[i, j], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(group.cos_b, cos_b[i, j], rtol=1e-10, atol=1e-12)
        # the page's heatmap: |cos| of a's below the diagonal, of b's above it
        m = unit_similarity_matrix(group)
        lower, upper = np.tril_indices(r, -1), np.triu_indices(r, 1)
        np.testing.assert_allclose(m[lower], np.abs(cos_a[lower]), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(m[upper], np.abs(cos_b[upper]), rtol=1e-10, atol=1e-12)
        assert msu.loc[module, "cos_a_max"] == pytest.approx(np.abs(group.cos_a).max(), rel=1e-12)


def test_dora_low_rank_part_and_dense_note(tmp_path):
    model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(r=4, lora_alpha=8, use_dora=True, target_modules=["q_proj"]))
    builders.randomize_lora(model)
    path = tmp_path / "dora"
    model.save_pretrained(path)
    base = builders.save(builders.tiny_llama(seed=0), tmp_path / "base")
    alone = lab.analyze(path, out=tmp_path / "out", run="alone", probes=["msu"], progress=False).table("msu")
    assert alone.note.str.contains("low-rank part").all() and (alone.permutation_error_max < 1e-13).all()
    with_base = lab.analyze(path, base=base, out=tmp_path / "out", run="based", probes=["msu"], progress=False).table("msu")
    assert with_base.note.str.contains("dense").all() and with_base["rank"].isna().all()
