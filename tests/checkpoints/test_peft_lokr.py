"""LoKr adapters read as a Kronecker product (lab/checkpoints/peft_types/lokr.py): equal to PEFT's own
update, W1/W2 factored as the file stores them, the structural rank bound, and what ``lab analyze``
writes (deltas, entanglement, spectra) equal to the same probes on PEFT's dense update.

The adapters are made by PEFT on the tiny LLaMA (hidden 32, MLP 48, k/v 16 rows), their parameters
moved off PEFT's initialisation (W1 = 0 there). The reference is PEFT, independently of lab: the saved
folder loaded with ``PeftModel.from_pretrained``, float64, ``merge_and_unload()`` minus the base.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import LoKrConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file

import builders
import lab
from lab.checkpoints import discover, iter_deltas
from lab.deltas import Factors, Kron
from lab.errors import FormatError
from lab.kernels import kron
from lab.kernels.controls import RANDOM_LORA, control_module
from lab.probes.entanglement import entanglement_profile

ADAPTERS = {
    # default split (−1): 32 = 4·8 and 16 = 4·4 align with the chain; 48 = 6·8 (2·3 | 2·2·2) does not
    "plain": dict(r=1, alpha=3, decompose_both=False, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"]),
    # decompose_factor 8: W1 8×8 is w1_a·w1_b (r = 2 < 8/2); down_proj's W2 4×6 is factored too; o_proj's
    # alpha comes from alpha_pattern
    "both": dict(r=2, alpha=4, decompose_both=True, decompose_factor=8, alpha_pattern={"o_proj": 7.0},
                 target_modules=["q_proj", "k_proj", "o_proj", "down_proj"]),
}


def _randomize(model, seed: int = 5, std: float = 0.1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad and p.is_floating_point():
                p.add_(std * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, llama_base):
    """name -> (adapter folder, PEFT's ΔW per module (out, in), float64)."""
    root = tmp_path_factory.mktemp("lokr")
    out = {}
    for name, kwargs in ADAPTERS.items():
        torch.manual_seed(0)
        model = get_peft_model(builders.tiny_llama(seed=0), LoKrConfig(**kwargs))
        _randomize(model)
        model.save_pretrained(root / name)
        loaded = PeftModel.from_pretrained(builders.tiny_llama(seed=0), root / name).double()
        names = [n for n, m in loaded.base_model.model.named_modules() if isinstance(m, BaseTunerLayer)]
        merged = loaded.merge_and_unload().state_dict()
        base = builders.tiny_llama(seed=0).double().state_dict()
        out[name] = (root / name, {n: (merged[f"{n}.weight"] - base[f"{n}.weight"]).numpy() for n in names})
    return out


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_read_as_a_kronecker_product_equal_to_peft(adapters, llama_base, name):
    folder, want = adapters[name]
    weights = load_file(folder / "adapter_model.safetensors")
    (ckpt,) = discover(folder)
    deltas = {d.module: d for d in iter_deltas(ckpt, llama_base)}
    assert set(deltas) == set(want)
    for module, d in deltas.items():
        k = d.kron
        assert d.kind == "lokr" and isinstance(k, Kron) and d.dense is None and d.is_factored
        assert _rel(d.to_dense(), want[module]) < 1e-6, module
        assert np.linalg.norm(want[module]) > 1e-3
        prefix = f"base_model.model.{module}"
        for which, w in (("w1", k.W1), ("w2", k.W2)):
            stored = f"{prefix}.lokr_{which}"
            if stored in weights:
                np.testing.assert_array_equal(w, weights[stored].double().numpy())
            else:  # kept as the stored w_a·w_b, never multiplied out
                assert isinstance(w, Factors) and w.scale == 1.0
                np.testing.assert_array_equal(w.B, weights[f"{stored}_a"].double().numpy())
                np.testing.assert_array_equal(w.A, weights[f"{stored}_b"].double().numpy())
        bounds = [min(weights[f"{prefix}.lokr_{w}"].shape) if f"{prefix}.lokr_{w}" in weights
                  else min(*weights[f"{prefix}.lokr_{w}_a"].shape, weights[f"{prefix}.lokr_{w}_b"].shape[1])
                  for w in ("w1", "w2")]
        assert d.rank_bound == bounds[0] * bounds[1] == np.linalg.matrix_rank(want[module]), module
        assert d.params == sum(t.numel() for key, t in weights.items() if key.startswith(f"{prefix}."))
        assert d.base is not None and d.base.shape == d.shape
    if name == "both":  # alpha_pattern: o_proj's scale is 7/2, the others' 4/2
        assert deltas["model.layers.0.self_attn.o_proj"].scale == 3.5 and deltas["model.layers.0.self_attn.q_proj"].scale == 2.0


def test_lab_analyze_writes_the_dense_profile_and_spectrum(tmp_path, adapters, llama_base):
    """Every entanglement row (aligned modules from the factors, the others multiplied out) and every
    singular value equal the same quantities of PEFT's dense ΔW."""
    runs = {}
    for name in ADAPTERS:
        folder, want = adapters[name]
        run = lab.analyze(folder, base=llama_base, out=tmp_path / name, run="r",
                          probes=["deltas", "entanglement", "spectra"], controls=name == "both", progress=False)
        runs[name] = run
        deltas = run.table("deltas").set_index("module")
        assert (deltas.kind == "lokr").all() and deltas.factored.all()
        ent = run.table("entanglement")
        sv = run.table("singular_values")
        for module, delta in want.items():
            assert deltas.loc[module, "fro_norm"] == pytest.approx(np.linalg.norm(delta), rel=1e-9)
            assert deltas.loc[module, "rank_bound"] == np.linalg.matrix_rank(delta)
            rows = ent[(ent.module == module) & (ent.source == "delta")].sort_values("cut")
            p = entanglement_profile(delta)
            np.testing.assert_array_equal(rows.cut, p.cuts)
            np.testing.assert_allclose(rows.entropy, p.entropy, rtol=0, atol=1e-10)
            np.testing.assert_allclose(rows.renyi2, p.renyi2, rtol=0, atol=1e-10)
            sigma = sv[(sv.module == module) & (sv.source == "delta")].sort_values("index").sigma.to_numpy()
            np.testing.assert_allclose(sigma, np.linalg.svd(delta, compute_uv=False)[: sigma.size], rtol=1e-9)
    # the planned controls are Gaussian factors of each module's structural rank rank(W1)·rank(W2)
    deltas = runs["both"].table("deltas")
    want_controls = {control_module(RANDOM_LORA, r.rows, r.cols, r.rank_bound) for r in deltas.itertuples()}
    controls = runs["both"].table("entanglement_summary")
    assert set(controls[controls.source == RANDOM_LORA].module) == want_controls
    # both paths ran: "plain" has modules whose chain cuts across the split (48 = 6·8), "both" has none
    (ckpt,) = discover(adapters["plain"][0])
    aligned = {d.module: kron.aligned(d.kron) for d in iter_deltas(ckpt, llama_base)}
    assert not aligned["model.layers.0.mlp.up_proj"] and aligned["model.layers.0.self_attn.q_proj"]


def test_a_module_missing_its_w1_is_a_one_line_error(tmp_path, adapters, llama_base):
    folder, _ = adapters["plain"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text((folder / "adapter_config.json").read_text())
    weights = load_file(folder / "adapter_model.safetensors")
    del weights["base_model.model.model.layers.0.self_attn.q_proj.lokr_w1"]
    save_file(weights, broken / "adapter_model.safetensors")
    (ckpt,) = discover(broken)
    with pytest.raises(FormatError, match=r"adapter_model\.safetensors: LoKr module 'model\.layers\.0\.self_attn\.q_proj' "
                                          r"needs lokr_w1, or lokr_w1_a and lokr_w1_b") as e:
        list(iter_deltas(ckpt, llama_base))
    assert "\n" not in str(e.value)
