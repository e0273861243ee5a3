"""Adapters of every other weight-modifying PEFT type, read through PEFT by the general path
(lab/checkpoints/peft_general.py) or by their type's structured reader (lab/checkpoints/peft_types/),
equal PEFT's own update of the whole model to 1e-6 relative.

Each adapter is made by PEFT on a tiny LLaMA or GPT-2 (Conv1D) saved to disk, its parameters moved
off their initial values (many types start at a zero update), and saved. The reference is PEFT
itself, independently of lab: the saved folder loaded with ``PeftModel.from_pretrained`` onto the
whole model, upcast to float64, ``merge_and_unload()``, minus the base weight. Reading one module
materialises only that module (and the tensors the tuner shares), prompt-type adapters are a
one-line error, and bad input names the file and tensor.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import peft
import pytest
import torch
from peft import PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file

import builders
import lab
from lab.checkpoints import discover, iter_deltas, open_base, plan_reads, read_module
from lab.checkpoints.loader import TensorLoader
from lab.checkpoints.peft_general import NO_WEIGHT_UPDATE, materialised
from lab.deltas import KINDS, PEFT_KINDS
from lab.errors import FormatError, InputError, ShapeError
from peft_reference import expected_parts, rel_err

QV = ["q_proj", "v_proj"]
LLAMA_ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# name -> (architecture, PEFT config class, its arguments): every weight-modifying type PEFT 0.21
# saves on these models; GPT-2's Conv1D only for the types whose tuner supports it
ADAPTERS = {
    "loha": ("llama", "LoHaConfig", dict(r=2, alpha=4, target_modules=LLAMA_ALL)),
    "lokr": ("llama", "LoKrConfig", dict(r=2, alpha=4, target_modules=QV + ["down_proj"])),
    "ia3": ("llama", "IA3Config", dict(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])),
    "vera": ("llama", "VeraConfig", dict(r=4, target_modules=QV + ["up_proj"], save_projection=True)),
    "vera_unsaved": ("llama", "VeraConfig", dict(r=4, target_modules=QV, save_projection=False)),
    "adalora": ("llama", "AdaLoraConfig", dict(init_r=4, target_r=2, total_step=10, target_modules=QV + ["o_proj"])),
    "oft": ("llama", "OFTConfig", dict(r=0, oft_block_size=4, target_modules=QV)),
    "boft": ("llama", "BOFTConfig", dict(boft_block_size=4, target_modules=QV)),
    "hra": ("llama", "HRAConfig", dict(r=2, target_modules=QV)),
    "fourierft": ("llama", "FourierFTConfig", dict(n_frequency=20, target_modules=QV)),
    "miss": ("llama", "MissConfig", dict(r=4, target_modules=QV)),
    "shira": ("llama", "ShiraConfig", dict(r=2, target_modules=QV)),
    "randlora": ("llama", "RandLoraConfig", dict(r=4, target_modules=QV)),
    "loha_bf16": ("llama_bf16", "LoHaConfig", dict(r=2, alpha=4, target_modules=QV + ["o_proj"])),
    "ia3_bin": ("llama", "IA3Config", dict(target_modules=["q_proj", "up_proj"], feedforward_modules=["up_proj"])),
    "ia3_gpt2": ("gpt2", "IA3Config", dict(target_modules=["c_attn", "mlp.c_proj"], feedforward_modules=["mlp.c_proj"],
                                           fan_in_fan_out=True)),
    "vera_gpt2": ("gpt2", "VeraConfig", dict(r=4, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True)),
    "adalora_gpt2": ("gpt2", "AdaLoraConfig", dict(init_r=4, target_r=2, total_step=10, target_modules=["c_attn"],
                                                   fan_in_fan_out=True)),
    "fourierft_gpt2": ("gpt2", "FourierFTConfig", dict(n_frequency=16, target_modules=["c_attn"], fan_in_fan_out=True)),
    "randlora_gpt2": ("gpt2", "RandLoraConfig", dict(r=4, target_modules=["c_attn"], fan_in_fan_out=True)),
}
MODELS = {"llama": lambda: builders.tiny_llama(seed=0), "gpt2": lambda: builders.tiny_gpt2(seed=0),
          "llama_bf16": lambda: builders.tiny_llama(seed=0, dtype=torch.bfloat16)}


def _randomize(model, seed: int = 5, std: float = 0.1):
    """Move every trainable floating adapter parameter off its initial value (ΔW = 0 for most types)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad and p.is_floating_point():
                p.add_(std * torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype))


def _mask_adalora(model) -> None:
    """AdaLoRA after budget allocation: a rank pattern that prunes some ranks of each module (saved pruned)."""
    config = model.peft_config["default"]
    pattern = {}
    for name, _ in model.base_model.model.named_parameters():  # the keys RankAllocator writes
        if name.endswith("lora_E.default"):
            key = name.removesuffix(".default")
            pattern[key] = [True, False, True, False] if "layers.0" in key else [False, True, True, True]
    config.rank_pattern = pattern


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Saved bases and adapters, built on first use: name -> (adapter folder, base folder)."""
    root = tmp_path_factory.mktemp("peft_general")
    cache: dict[str, tuple[Path, Path]] = {}

    def get(name: str):
        if name not in cache:
            arch, cls, kwargs = ADAPTERS[name]
            base = root / f"base_{arch}"
            if not base.exists():
                builders.save(MODELS[arch](), base)
            torch.manual_seed(0)
            model = get_peft_model(MODELS[arch](), getattr(peft, cls)(**kwargs))
            _randomize(model)
            if cls == "AdaLoraConfig":
                _mask_adalora(model)
            model.save_pretrained(root / name, safe_serialization=not name.endswith("_bin"))  # _bin: adapter_model.bin
            cache[name] = (root / name, base)
        return cache[name]

    return get


def peft_updates(folder: Path, arch: str) -> dict[str, np.ndarray]:
    """PEFT's own ΔW per adapted module, in lab's (out, in) layout: the saved adapter loaded onto the
    whole model, float64, merge_and_unload() minus the base weight."""
    model = PeftModel.from_pretrained(MODELS[arch](), folder).double()
    names = [n for n, m in model.base_model.model.named_modules() if isinstance(m, BaseTunerLayer)]
    conv1d = {n: type(model.base_model.model.get_submodule(n).get_base_layer()).__name__ == "Conv1D" for n in names}
    merged = model.merge_and_unload().state_dict()
    base = MODELS[arch]().double().state_dict()
    out = {}
    for name in names:
        delta = (merged[f"{name}.weight"] - base[f"{name}.weight"]).numpy()
        out.update(expected_parts(name, delta.T if conv1d[name] else delta))
    return out


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_update_equals_peft_merged_minus_base(artifacts, name):
    folder, base = artifacts(name)
    arch, cls, _ = ADAPTERS[name]
    want = peft_updates(folder, arch)
    (ckpt,) = discover(folder)
    deltas = {d.module: d for d in iter_deltas(ckpt, base)}
    assert set(deltas) == set(want)
    kind = json.loads((folder / "adapter_config.json").read_text())["peft_type"].lower()
    base_weights = load_file(base / "model.safetensors")
    for module, d in deltas.items():
        dense = d.to_dense()  # a structured reader's factors (LoKr's Kronecker product) multiplied out
        assert d.kind == kind and dense.dtype == np.float64
        assert np.linalg.norm(want[module]) > 1e-3, f"{module}: the randomised adapter should change the weight"
        assert rel_err(dense, want[module]) < 1e-6, module
        assert d.base is not None and d.base.shape == d.shape
    if name in ("loha", "ia3"):  # a lone module's base weight is the saved one, in the Delta's layout
        d = deltas["model.layers.1.mlp.down_proj"]
        np.testing.assert_array_equal(d.base, base_weights["model.layers.1.mlp.down_proj.weight"].double().numpy())


@pytest.mark.parametrize("name", ["loha", "vera_gpt2", "adalora"])
def test_lab_analyze_writes_the_same_updates(tmp_path, artifacts, name):
    """Through lab.analyze: the deltas table's kind, shape and ‖ΔW‖_F are PEFT's, params the module's tensors."""
    folder, base = artifacts(name)
    want = peft_updates(folder, ADAPTERS[name][0])
    run = lab.analyze(folder, base=base, out=tmp_path / "res", run="r", probes=["deltas", "spectra"], progress=False)
    table = run.table("deltas").set_index("module")
    assert set(table.index) == set(want)
    kind = json.loads((folder / "adapter_config.json").read_text())["peft_type"].lower()
    assert (table.kind == kind).all()  # factored or dense by type: tests/checkpoints/test_peft_structured.py
    weights = load_file(folder / "adapter_model.safetensors")
    for module, delta in want.items():
        row = table.loc[module]
        assert (row.rows, row.cols) == delta.shape
        assert row.fro_norm == pytest.approx(np.linalg.norm(delta), rel=1e-6)
        peft_name = module.rsplit(".", 1)[0] if module.endswith(("attn.c_attn.q", "attn.c_attn.k", "attn.c_attn.v")) else module
        own = sum(t.numel() for k, t in weights.items() if k.startswith(f"base_model.model.{peft_name}."))
        assert row.params == own
    spectra = run.table("spectra")
    assert set(spectra.module) == set(want)


def test_adalora_rank_mask_is_the_saved_one(artifacts):
    """The AdaLoRA file holds only the ranks its rank_pattern keeps (so the test above reads a masked adapter)."""
    folder, _ = artifacts("adalora")
    weights = load_file(folder / "adapter_model.safetensors")
    ranks = {k: t.shape[0] for k, t in weights.items() if k.endswith("lora_E")}
    assert sorted(set(ranks.values())) == [2, 3]


def test_peft_kinds_cover_every_weight_modifying_type():
    """lab.deltas knows every type the installed PEFT has: prompt types are refused, the rest are kinds."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    for ptype, cls in PEFT_TYPE_TO_CONFIG_MAPPING.items():
        prompt = getattr(cls, "is_prompt_learning", False) is True or ptype in NO_WEIGHT_UPDATE
        if ptype == "LORA":
            continue
        if prompt:
            assert ptype in NO_WEIGHT_UPDATE and ptype.lower() not in KINDS, ptype
        else:
            assert ptype.lower() in PEFT_KINDS, ptype
    assert set(PEFT_KINDS) <= set(KINDS)


def _real_tensors(model) -> dict[str, torch.Tensor]:
    """Parameters and buffers that hold more than one element of storage (not meta, not a placeholder)."""
    out = {}
    for name, t in list(model.named_parameters(remove_duplicate=False)) + list(model.named_buffers(remove_duplicate=False)):
        if t.device.type != "meta" and t.untyped_storage().nbytes() > t.element_size():
            out[name] = t
    return out


@pytest.mark.parametrize("name", ["loha", "vera"])
def test_reading_a_module_materialises_only_that_module(artifacts, name):
    """Inside the read, the skeleton's real storage is this module's (base weight and adapter) plus the
    tuner's shared tensors; every other module stays meta or a one-element placeholder; after it, nothing
    of the module is left real."""
    from lab.checkpoints.peft_skeleton import skeleton

    folder, base = artifacts(name)
    reads = plan_reads(discover(folder)[0], open_base(base))
    assert len(reads) > 2
    spec = reads[1]
    model, _ = skeleton(spec.peft.config, spec.peft.base_config, str(spec.peft.tensors[0].file))
    prefix = f"base_model.model.{spec.peft.module}."
    before = _real_tensors(model)
    assert not any(n.startswith(prefix) for n in before if not _shared(n)), sorted(before)
    with TensorLoader() as loader, materialised(spec.peft, spec.base, loader) as layer:
        inside = _real_tensors(model)
        module_bytes = sum(t.untyped_storage().nbytes() for n, t in inside.items() if n.startswith(prefix) and not _shared(n))
        other = {n for n in inside if not n.startswith(prefix) and not _shared(n)}
        assert not other, f"other modules materialised: {sorted(other)[:5]}"
        assert layer.get_base_layer().weight.dtype == torch.float64
        rows, cols = spec.shape
        # the base weight in float64 and this module's adapter tensors, nothing else
        assert module_bytes == 8 * rows * cols + 8 * spec.peft.params
    after = _real_tensors(model)
    assert not any(n.startswith(prefix) for n in after if not _shared(n)), sorted(after)


def _shared(name: str) -> bool:
    """The tuner's model-level tensors (VeRA's projections), referenced from every layer."""
    return ".vera_A." in name or ".vera_B." in name or name.startswith("base_model.vera_")


def test_a_module_read_pickles_and_reads_the_same(artifacts):
    """Module reads are shipped to Dask workers: a pickled read gives the same update."""
    folder, base = artifacts("boft")
    spec = plan_reads(discover(folder)[0], open_base(base))[0]
    again = pickle.loads(pickle.dumps(spec))
    with TensorLoader() as loader:
        (a,) = read_module(spec, loader)
        (b,) = read_module(again, loader)
    np.testing.assert_array_equal(a.dense, b.dense)


def _lab() -> list[str]:
    script = Path(sys.executable).with_name("lab")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "lab.cli"]


def test_prompt_tuning_has_no_weight_update_cli(tmp_path, llama_base):
    """lab analyze on a prompt-tuning adapter: exit 2, one stderr line naming the config."""
    from peft import PromptTuningConfig

    model = get_peft_model(builders.tiny_llama(seed=0), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    folder = tmp_path / "prompt"
    model.save_pretrained(folder)
    done = subprocess.run([*_lab(), "analyze", str(folder), "--base", str(llama_base), "--out", str(tmp_path / "res")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "no weight update to analyse" in lines[0] and str(folder / "adapter_config.json") in lines[0]


def test_prefix_tuning_has_no_weight_update(tmp_path):
    from peft import PrefixTuningConfig

    model = get_peft_model(builders.tiny_llama(seed=0), PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    model.save_pretrained(tmp_path / "prefix")
    with pytest.raises(FormatError, match=r"adapter_config.json: peft_type 'PREFIX_TUNING' .* no weight update to analyse"):
        discover(tmp_path / "prefix")


def test_without_base_names_the_folder_and_type(artifacts):
    folder, _ = artifacts("lokr")
    with pytest.raises(InputError, match=rf"{folder}/adapter_config.json: this LOKR adapter .* pass --base BASE"):
        list(iter_deltas(discover(folder)[0]))


def _damaged(folder: Path, tmp_path: Path, edit) -> Path:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter_config.json").write_text((folder / "adapter_config.json").read_text())
    tensors = load_file(folder / "adapter_model.safetensors")
    edit(tensors)
    save_file(tensors, bad / "adapter_model.safetensors")
    return bad


def test_a_tensor_of_the_wrong_shape_names_file_and_tensor(tmp_path, artifacts):
    folder, base = artifacts("loha")
    key = "base_model.model.model.layers.0.self_attn.q_proj.hada_w1_a"
    bad = _damaged(folder, tmp_path, lambda t: t.__setitem__(key, t[key][:, :1].contiguous()))
    with pytest.raises(ShapeError, match=r"adapter_model.safetensors: size mismatch for .*layers.0.self_attn.q_proj.hada_w1_a"):
        plan_reads(discover(bad)[0], open_base(base))


def test_a_foreign_tensor_names_file_and_tensor(tmp_path, artifacts):
    folder, base = artifacts("ia3")
    key = "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"
    bad = _damaged(folder, tmp_path, lambda t: t.__setitem__(key, torch.zeros(2, 32)))
    with pytest.raises(FormatError, match=rf"adapter_model.safetensors: tensor '{key}' is not a parameter of the IA3 adapter"):
        plan_reads(discover(bad)[0], open_base(base))


def test_cli_run_is_quiet(tmp_path, artifacts):
    """lab analyze --quiet on a general-path adapter: exit 0 and nothing on stderr (PEFT's and
    transformers' warnings while the skeleton is built would otherwise reach the user)."""
    folder, base = artifacts("vera_unsaved")
    done = subprocess.run([*_lab(), "analyze", str(folder), "--base", str(base), "--out", str(tmp_path / "res"), "--quiet",
                           "--probes", "deltas"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stderr == "", done.stderr


# types the tests above make with chosen configs, and the others PEFT 0.21 makes on the tiny LLaMA
# whose updates lab must equal
COVERED = {"LOHA", "LOKR", "IA3", "VERA", "ADALORA", "OFT", "BOFT", "HRA", "FOURIERFT", "MISS", "SHIRA", "RANDLORA"}
EXACT = {"C3A", "DEFT", "GRALORA", "HIRA", "LN_TUNING", "PEANUT", "PVERA", "ROAD", "TRAINABLE_TOKENS", "VBLORA", "WAVEFT"}
# arguments where PEFT's defaults cannot build on a 32-feature model (block, group or vector sizes above
# 32, r above min(out, in), n_frequency above out·in) or the type has a required argument
CONFIGS = {
    "C3A": dict(block_size=8),
    "PSOFT": dict(r=4),
    "ROAD": dict(group_size=8),
    "TRAINABLE_TOKENS": dict(token_indices=[1, 3, 5], target_modules=["embed_tokens"]),
    "VBLORA": dict(r=2, vector_length=8, num_vectors=16),
    "WAVEFT": dict(n_frequency=64),
}
# types whose update PEFT itself refuses to merge on this model: (exception, a regex of what PEFT says);
# lab must refuse them too, in one line
PEFT_REFUSES_MERGE = {
    "BEFT": (ValueError, "Base layer has no bias, cannot merge bias adapter"),  # a bias adapter; LLaMA has no biases
    "LILY": (NotImplementedError, "This method is not supported for Lily"),
    "POLY": (NotImplementedError, "^$"),  # routed per task: no single merged weight
    "SHADOW": (NotImplementedError, "ShadowPEFT cannot be merged into the base model"),
}


def _types(mapping) -> dict[str, type]:
    return {str(getattr(t, "value", t)): c for t, c in mapping.items()}


def _other_types() -> list[str]:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    return sorted(set(_types(PEFT_TYPE_TO_CONFIG_MAPPING)) - NO_WEIGHT_UPDATE - COVERED - {"LORA", "XLORA"})


def _one_line_refusal(folder: Path, base: Path, ptype: str) -> str:
    with pytest.raises(lab.errors.LabError) as refused:
        list(iter_deltas(discover(folder)[0], base))
    message = str(refused.value)
    assert "\n" not in message and str(folder) in message, message
    return message


@pytest.mark.parametrize("ptype", _other_types())
def test_every_other_type_is_peft_exact_or_a_one_line_error(tmp_path, llama_base, ptype):
    """Every other weight-modifying type of the installed PEFT, made on q/v of the tiny LLaMA (its
    defaults, or :data:`CONFIGS` where they cannot build there) and randomised: lab's update equals
    PEFT's merge_and_unload − base, or lab refuses with a one-line LabError naming the adapter's
    folder; never a different number. Where PEFT itself refuses to merge, the refusal is PEFT's
    documented one (:data:`PEFT_REFUSES_MERGE`) and lab refuses as well."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    cls = _types(PEFT_TYPE_TO_CONFIG_MAPPING)[ptype]
    folder = tmp_path / "adapter"
    config = cls(**{"target_modules": ["q_proj", "v_proj"], **CONFIGS.get(ptype, {})})
    model = get_peft_model(builders.tiny_llama(seed=0), config)
    _randomize(model)
    model.save_pretrained(folder)
    if ptype in PEFT_REFUSES_MERGE:
        error, says = PEFT_REFUSES_MERGE[ptype]
        with pytest.raises(error, match=says):
            peft_updates(folder, "llama")
        _one_line_refusal(folder, llama_base, ptype)
        return
    want = peft_updates(folder, "llama")
    assert want and all(np.linalg.norm(d) > 1e-3 for d in want.values()), "the randomised adapter should change W"
    if ptype not in EXACT:
        _one_line_refusal(folder, llama_base, ptype)
        return
    got = {d.module: d for d in iter_deltas(discover(folder)[0], llama_base)}
    assert set(got) == set(want)
    for module, d in got.items():
        assert rel_err(d.dense, want[module]) < 1e-6, module
    assert ptype.lower() in KINDS


def test_xlora_is_a_one_line_error(tmp_path, llama_base):
    """X-LoRA mixes LoRA experts with weights a classifier computes from each input: no single ΔW.
    Made as PEFT requires (use_cache off, a saved LoRA expert, the hidden size), lab refuses it in one line."""
    expert = get_peft_model(builders.tiny_llama(seed=0), peft.LoraConfig(r=2, target_modules=QV))
    _randomize(expert)
    expert.save_pretrained(tmp_path / "expert")
    base = builders.tiny_llama(seed=0)
    with pytest.raises(ValueError, match="`use_cache` must be False"):  # PEFT's own precondition
        get_peft_model(base, peft.XLoraConfig(task_type="CAUSAL_LM", hidden_size=32, adapters={"0": str(tmp_path / "expert")}))
    base = builders.tiny_llama(seed=0)
    base.config.use_cache = False
    model = get_peft_model(base, peft.XLoraConfig(task_type="CAUSAL_LM", hidden_size=32, adapters={"0": str(tmp_path / "expert")}))
    model.save_pretrained(tmp_path / "xlora")
    _one_line_refusal(tmp_path / "xlora", llama_base, "XLORA")


def test_another_methods_weights_under_this_config_name_both_files(tmp_path, llama_lora, llama_base):
    """LoRA weights with peft_type LOHA in the config: refused before PEFT builds anything."""
    lora, _ = llama_lora
    bad = tmp_path / "bad"
    bad.mkdir()
    config = json.loads((lora / "adapter_config.json").read_text())
    (bad / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "LOHA"}))
    (bad / "adapter_model.safetensors").write_bytes((lora / "adapter_model.safetensors").read_bytes())
    with pytest.raises(FormatError, match=rf"adapter_model.safetensors: holds no LOHA tensors .*{bad}/adapter_config.json"):
        plan_reads(discover(bad)[0], open_base(llama_base))


_HUGE_RANK = """
import json, resource, sys
from lab.checkpoints import discover, open_base, plan_reads
from lab.errors import ShapeError
plan_reads(discover(sys.argv[1])[0], open_base(sys.argv[3]))  # the same adapter with its true r: imports, a skeleton
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    plan_reads(discover(sys.argv[2])[0], open_base(sys.argv[3]))
except ShapeError as e:
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"error": str(e), "grown_kib": grown}))
"""


def test_a_config_rank_far_beyond_the_file_is_refused_before_allocating(tmp_path, llama_base):
    """A LoHa config claiming r = 10⁶ over tensors of r = 2: a ShapeError naming the tensor, found on
    an all-meta build, so the process never holds the ~1 GB adapter that r would allocate."""
    model = get_peft_model(builders.tiny_llama(seed=0), peft.LoHaConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(tmp_path / "good")
    model.save_pretrained(tmp_path / "bad")
    config = json.loads((tmp_path / "bad" / "adapter_config.json").read_text())
    (tmp_path / "bad" / "adapter_config.json").write_text(json.dumps({**config, "r": 10**6}))
    done = subprocess.run([sys.executable, "-c", _HUGE_RANK, str(tmp_path / "good"), str(tmp_path / "bad"), str(llama_base)],
                          capture_output=True, text=True, timeout=300)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "size mismatch for" in result["error"] and "hada_w1_a" in result["error"]
    assert result["grown_kib"] < 200 * 1024, result  # r = 10⁶ built for real: 4 × 32·10⁶ float32 per module
