"""The merge algebra (lab.kernels.merging) against numpy on dense matrices, and LEGO's choices."""

from __future__ import annotations

import numpy as np
import pytest
from peft import LoraConfig, PeftModel, get_peft_model
from typer.testing import CliRunner

import builders
from lab.cli import app
from lab.deltas import Factors
from lab.kernels import merging


def _factors(rng, m=24, n=20, r=4, scale=1.0):
    return Factors(rng.normal(size=(m, r)), rng.normal(size=(r, n)), scale)


def test_stack_and_svd_against_numpy():
    rng = np.random.default_rng(0)
    fs = [_factors(rng, r=3, scale=2.0), _factors(rng, r=5, scale=0.5 / np.sqrt(5)), _factors(rng, r=2, scale=-1.0)]
    w = [0.2, 1.5, -0.7]
    dense = sum(wj * f.to_dense() for wj, f in zip(w, fs))
    assert np.linalg.norm(merging.stack(fs, w).to_dense() - dense) / np.linalg.norm(dense) < 1e-14
    U, s, Vt = np.linalg.svd(dense)
    for k in (1, 4, 10):
        got = merging.svd(fs, w, k)
        best = (U[:, :k] * s[:k]) @ Vt[:k]
        assert np.linalg.norm(got.to_dense() - best) / np.linalg.norm(dense) < 1e-12
        e = merging.errors(got, merging.stack(fs, w))
        assert e.rel_fro == pytest.approx(np.sqrt((s[k:] ** 2).sum()) / np.linalg.norm(s), rel=1e-9, abs=1e-14)
        assert e.optimal_rel_fro == pytest.approx(e.rel_fro, rel=1e-9, abs=1e-14)


def test_lego_clusters_sign_flipped_copies_together():
    """Units given with opposite signs on both factors (b·aᵀ = (−b)(−a)ᵀ) are one unit."""
    rng = np.random.default_rng(1)
    f = _factors(rng, r=3)
    flipped = Factors(-f.B, -f.A, f.scale)
    merged = merging.lego([f, flipped], [0.5, 0.5], k=3, seed=0)
    exact = merging.stack([f, flipped], [0.5, 0.5])
    assert merging.errors(merged, exact).rel_fro < 1e-12  # each pair of copies found and summed


def test_lego_oracle_scale_fitted_to_the_sum_shrinks_its_overshoot():
    """lego-oracle (not the paper's): norm-restored centroids times n_c overshoot ‖T‖; its output
    scale γ, fitted to T itself, brings the norm below ‖T‖ and lowers the error against T."""
    rng = np.random.default_rng(2)
    fs = [_factors(rng, m=30, n=30, r=4) for _ in range(4)]
    w = [0.25] * 4
    T = merging.stack(fs, w)
    norm = lambda f: np.linalg.norm(f.to_dense())
    param_only = merging.lego_oracle(fs, w, k=4, seed=0, reweight=True, output_reweight=False)
    both = merging.lego_oracle(fs, w, k=4, seed=0, reweight=True)
    assert norm(param_only) > 1.2 * norm(T)  # expansion: the merged update is much larger than the exact sum
    assert norm(both) <= norm(T) * (1 + 1e-12)
    assert merging.errors(both, T).rel_fro < merging.errors(param_only, T).rel_fro
    assert merging.errors(both, T).rel_fro >= merging.errors(both, T).optimal_rel_fro


def test_lego_is_seeded():
    rng = np.random.default_rng(3)
    fs = [_factors(rng) for _ in range(3)]
    a = merging.lego(fs, [1, 1, 1], k=5, seed=7)
    b = merging.lego(fs, [1, 1, 1], k=5, seed=7)
    np.testing.assert_array_equal(a.B, b.B)
    np.testing.assert_array_equal(a.A, b.A)


def test_gpt2_fan_in_fan_out_and_embedding_adapters_merge_and_load(tmp_path):
    paths = []
    for seed in (1, 2):
        model = get_peft_model(builders.tiny_gpt2(seed=0), LoraConfig(r=2 + seed, lora_alpha=4, fan_in_fan_out=True,
                                                                        target_modules=["c_attn", "wte"]))
        builders.randomize_lora(model, seed=seed)
        model.save_pretrained(tmp_path / f"g{seed}")
        paths.append((tmp_path / f"g{seed}", model))
    out = tmp_path / "merged"
    result = CliRunner().invoke(app, ["merge", *(str(p) for p, _ in paths), "--out", str(out), "--weights", "1,1",
                                      "--results", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    merged = PeftModel.from_pretrained(builders.tiny_gpt2(seed=0), out).double()
    inputs = [m.double() for _, m in paths]
    for name, layer in merged.base_model.model.named_modules():
        if hasattr(layer, "get_delta_weight") and "default" in getattr(layer, "r", {}):
            want = sum(dict(m.base_model.model.named_modules())[name].get_delta_weight("default") for m in inputs)
            got = layer.get_delta_weight("default")
            assert (got - want).norm() / want.norm() < 1e-6, name
