"""lab.analyze end to end on real checkpoints: the deltas table against torch/PEFT numbers,
the manifest against the files on disk, time series, and failures that never look complete."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file

import builders
import lab
from lab.errors import LabError, NonFiniteError


@pytest.fixture(scope="module")
def llama_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama")
    base = builders.save(builders.tiny_llama(seed=0), root / "base")
    ft = builders.save(builders.perturb(builders.tiny_llama(seed=0), seed=5), root / "ft")
    return base, ft


@pytest.fixture(scope="module")
def llama_lora(tmp_path_factory, llama_pair):
    root = tmp_path_factory.mktemp("lora")
    model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    builders.randomize_lora(model)
    model.save_pretrained(root / "adapter")
    expected = {}
    for name, module in model.named_modules():
        if hasattr(module, "get_delta_weight") and "default" in getattr(module, "lora_A", {}):
            expected[name.removeprefix("base_model.model.")] = module.get_delta_weight("default").detach().double().numpy()
    return root / "adapter", expected


def test_full_finetune_deltas_match_torch(tmp_path, llama_pair):
    base, ft = llama_pair
    run = lab.analyze(ft, base=base, out=tmp_path, progress=False)
    df = run.table("deltas").set_index("module")
    wb, wf = load_file(base / "model.safetensors"), load_file(ft / "model.safetensors")
    two_d = [k for k, v in wb.items() if v.ndim == 2]
    assert len(df) == len(two_d)
    for key in two_d:
        expected = torch.linalg.norm(wf[key].double() - wb[key].double()).item()
        assert df.loc[key.removesuffix(".weight"), "fro_norm"] == pytest.approx(expected, rel=1e-9)
    assert set(df.kind) == {"full"}
    assert df.loc["model.layers.1.self_attn.q_proj", "layer"] == 1
    assert df.loc["model.layers.1.self_attn.q_proj", "role"] == "q"


def test_adapter_deltas_match_peft_and_manifest_describes_inputs(tmp_path, llama_pair, llama_lora):
    base, _ = llama_pair
    adapter, expected = llama_lora
    run = lab.analyze(adapter, base=base, out=tmp_path, run="lora", progress=False)
    df = run.table("deltas").set_index("module")
    assert sorted(df.index) == sorted(expected)
    for module, delta in expected.items():
        assert df.loc[module, "fro_norm"] == pytest.approx(np.linalg.norm(delta), rel=1e-6)
        assert df.loc[module, "scale"] == pytest.approx(8 / 4)
        assert df.loc[module, "rank_bound"] == 4
    manifest = run.manifest
    assert manifest["status"] == "complete" and manifest["run"] == "lora"
    files = manifest["inputs"]["checkpoints"][0]["files"] + manifest["inputs"]["base"]
    for f in files:
        data = open(f["path"], "rb").read()
        assert f["size"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()
    assert any(f["path"].endswith("adapter_config.json") for f in files)
    assert manifest["versions"]["peft"] and manifest["options"]["base"] == str(base.resolve())


def test_time_series_rows_carry_steps(tmp_path, llama_lora):
    adapter, _ = llama_lora
    series = tmp_path / "train"
    for step in (10, 2):
        shutil.copytree(adapter, series / f"checkpoint-{step}")
    run = lab.analyze(series, out=tmp_path / "out", progress=False)
    df = run.table("deltas")
    assert sorted(df.step.unique().tolist()) == [2, 10]
    assert set(df.checkpoint) == {"checkpoint-2", "checkpoint-10"}


def test_modules_regex_selects(tmp_path, llama_pair):
    base, ft = llama_pair
    run = lab.analyze(ft, base=base, out=tmp_path, modules=r"self_attn\.q_proj", progress=False)
    df = run.table("deltas")
    assert len(df) == 2 and set(df.role) == {"q"}


def test_nonfinite_weight_mid_run_leaves_run_incomplete(tmp_path, llama_pair):
    base, ft = llama_pair
    bad = tmp_path / "bad"
    shutil.copytree(ft, bad)
    tensors = load_file(bad / "model.safetensors")
    key = "model.layers.1.mlp.down_proj.weight"
    tensors[key][0, 0] = float("nan")
    save_file(tensors, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(NonFiniteError, match="down_proj"):
        lab.analyze(bad, base=base, out=tmp_path / "out", progress=False)
    manifest = json.loads((tmp_path / "out" / "bad" / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and "down_proj" in manifest["error"]
    assert not list((tmp_path / "out" / "bad").glob("*.parquet"))
    run = lab.analyze(bad, base=base, out=tmp_path / "out", allow_nonfinite=True, overwrite=True, progress=False)
    assert run.complete


def test_bad_options_fail_before_any_folder_is_made(tmp_path, llama_pair):
    base, ft = llama_pair
    with pytest.raises(LabError, match="regular expression"):
        lab.analyze(ft, base=base, out=tmp_path, modules="(", progress=False)
    with pytest.raises(LabError, match="unknown probe"):
        lab.analyze(ft, base=base, out=tmp_path, probes=["nope"], progress=False)
    with pytest.raises(LabError, match="needs --base"):
        lab.analyze(ft, out=tmp_path, targets=["weight"], progress=False)
    assert not any(tmp_path.iterdir())


def test_untouched_modules_are_reported_unchanged_not_probed(tmp_path, llama_pair):
    base, _ = llama_pair
    model = builders.tiny_llama(seed=0)
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight.add_(0.01)
    ft = builders.save(model, tmp_path / "q-only")
    run = lab.analyze(ft, base=base, out=tmp_path / "out", probes=["entanglement"], progress=False)
    deltas = run.table("deltas").set_index("module")
    changed = deltas.index[deltas.fro_norm > 0].tolist()
    assert changed == ["model.layers.0.self_attn.q_proj"]
    assert deltas.drop(index=changed).note.str.contains("unchanged").all()
    assert set(run.table("entanglement").module) == set(changed)
