"""lab squeeze --steps: the squeezed adapter trains a few more steps at its rank on the input run's
corpus (LoRA-Squeeze's in-tuning variant), starting exactly from the squeezed factors."""

from __future__ import annotations

import json

import numpy as np
from safetensors.numpy import load_file

from lab.finetune.train import CONFIG_FILE, LOSS_FILE, is_complete
from lab.squeeze.api import squeeze


def test_steps_continue_training_at_the_target_rank(tmp_path, minilm_lora):
    done = squeeze(minilm_lora / "checkpoint-2", tmp_path / "r2", rank=2, steps=2, results=tmp_path / "res")
    run = done.continued
    assert run == tmp_path / "r2-steps" and is_complete(run)
    record = json.loads((run / CONFIG_FILE).read_text())
    source = json.loads((minilm_lora / CONFIG_FILE).read_text())
    assert record["options"]["texts"] == source["options"]["texts"]  # the same corpus
    assert record["options"]["init_adapter"] == str(tmp_path / "r2")
    assert len((run / LOSS_FILE).read_text().splitlines()) == 2
    squeezed = load_file(tmp_path / "r2" / "adapter_model.safetensors")
    trained = load_file(run / "checkpoint-2" / "adapter_model.safetensors")
    assert set(trained) == set(squeezed)
    assert all(trained[k].shape == squeezed[k].shape and 2 in squeezed[k].shape for k in squeezed)
    moved = [not np.array_equal(trained[k], squeezed[k]) for k in squeezed]
    assert all(moved)
    # one step of Adam moves each entry by at most about the learning rate: training started from the squeezed factors
    lr = record["options"]["lr"]
    assert all(np.abs(trained[k] - squeezed[k]).max() <= 2 * 2 * lr + 1e-6 for k in squeezed)
