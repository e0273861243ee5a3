"""lab squeeze --steps (Cont-Squeeze): the Post-Squeeze adapter trains a few more steps at its rank
on the input run's corpus, continuing its data order and step numbers, at the source run's scale
α/r; its first checkpoint is exactly the Post-Squeeze update (PEFT's get_delta_weight of both)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from safetensors.numpy import load_file

from lab.finetune.models import load_model, resolve_base
from lab.finetune.train import CONFIG_FILE, LOSS_FILE, is_complete
from lab.squeeze.api import squeeze


def _peft_deltas(base: str, adapter) -> dict[str, tuple[np.ndarray, float]]:
    """(ΔW, scale) of every LoRA module as PEFT computes them after PeftModel.from_pretrained."""
    from peft import PeftModel

    model, _ = load_model(resolve_base(base))
    model = PeftModel.from_pretrained(model, adapter)
    return {n: (m.get_delta_weight("default").detach().double().numpy(), m.scaling["default"])
            for n, m in model.named_modules() if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})}


@pytest.fixture(scope="module")
def continued(tmp_path_factory, minilm_lora):
    tmp = tmp_path_factory.mktemp("cont")
    return tmp, squeeze(minilm_lora / "checkpoint-1", tmp / "r2", rank=2, steps=2, results=tmp / "res")


def test_cont_squeeze_continues_the_source_run(continued, minilm_lora):
    tmp, done = continued
    run = done.continued
    assert run == tmp / "r2-steps" and is_complete(run)
    record = json.loads((run / CONFIG_FILE).read_text())
    source = json.loads((minilm_lora / CONFIG_FILE).read_text())
    assert record["options"]["texts"] == source["options"]["texts"]  # the same corpus
    assert record["options"]["init_adapter"] == str(tmp / "r2")
    # the source checkpoint was step 1: the run's steps are 2 and 3, its first checkpoint the start
    assert [json.loads(line)["step"] for line in (run / LOSS_FILE).read_text().splitlines()] == [2, 3]
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-3"]


def test_cont_squeeze_trains_at_the_source_scale_and_starts_at_post_squeeze(continued, minilm_lora):
    tmp, done = continued
    run = done.continued
    source = json.loads((minilm_lora / CONFIG_FILE).read_text())
    base = source["base_model"]
    s_source = source["options"]["alpha"] / source["options"]["r"]  # α/r as trained (8/4)
    post = _peft_deltas(base, tmp / "r2")
    start = _peft_deltas(base, run / "checkpoint-1")
    end = _peft_deltas(base, run / "checkpoint-3")
    assert set(post) == set(start) == set(end) and post
    for name in post:
        assert post[name][1] == 1.0  # the Post-Squeeze adapter itself is written at scale 1
        assert math.isclose(start[name][1], s_source) and math.isclose(end[name][1], s_source)
        # step 0 of Cont-Squeeze is the Post-Squeeze update (float32 factors rescaled by √s: rounding only)
        np.testing.assert_allclose(start[name][0], post[name][0], rtol=0, atol=1e-6 * np.abs(post[name][0]).max())
        assert not np.allclose(end[name][0], post[name][0], rtol=0, atol=1e-6 * np.abs(post[name][0]).max())
    adapter = json.loads((run / "checkpoint-3" / "adapter_config.json").read_text())
    assert adapter["r"] == 2 and math.isclose(adapter["lora_alpha"] / adapter["r"], s_source)


def test_cont_squeeze_steps_move_the_factors_by_adams_step(continued):
    tmp, done = continued
    run = done.continued
    lr = json.loads((run / CONFIG_FILE).read_text())["options"]["lr"]
    first = load_file(run / "checkpoint-1" / "adapter_model.safetensors")
    trained = load_file(run / "checkpoint-3" / "adapter_model.safetensors")
    assert set(trained) == set(first) and all(first[k].shape == trained[k].shape and 2 in first[k].shape for k in first)
    assert all(not np.array_equal(trained[k], first[k]) for k in first)
    # each Adam step moves an entry by at most about the learning rate: two steps from the start
    assert all(np.abs(trained[k] - first[k]).max() <= 2 * lr * 1.01 for k in first)
