"""In-Squeeze (lab finetune --squeeze-to K): the rank is annealed from r to K during a real MiniLM
fine-tune; every checkpoint loads in PEFT at the rank finetune_config.json records for its step,
the last one's ΔW (PEFT's get_delta_weight) has numpy rank ≤ K, the scale α/r never changes, and
each truncation is numpy's best rank-k approximation of the update it replaced."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from finetune_helpers import run
from lab.errors import InputError
from lab.finetune import FinetuneConfig
from lab.finetune import insqueeze
from lab.finetune.models import load_model, resolve_base
from lab.finetune.train import CONFIG_FILE, LOSS_FILE

R, K, ALPHA = 6, 2, 12.0


@pytest.fixture(scope="module")
def insqueezed(tmp_path_factory, texts_file) -> Path:
    return run(tmp_path_factory.mktemp("insqueeze") / "minilm", model="minilm", method="lora", texts=str(texts_file),
               lr=2e-3, r=R, alpha=ALPHA, squeeze_to=K, squeeze_steps=(2, 4), steps=5, save_every=1, batch_size=12)


def _peft(base_dir: str, ckpt: Path):
    from peft import PeftModel

    model, _ = load_model(resolve_base(base_dir))
    return PeftModel.from_pretrained(model, ckpt).eval()


def _lora_layers(model) -> dict:
    return {n: m for n, m in model.named_modules() if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {})}


def test_the_linear_schedule_by_hand():
    # R = 6 → K = 2 over steps 2..4 (n = 3): r(t) = 2 + ⌈4·(4 − t)/3⌉ → ⌈8/3⌉ = 3, ⌈4/3⌉ = 2, 0
    assert insqueeze.schedule(6, 2, 2, 4) == [(2, 5), (3, 4), (4, 2)]
    assert [insqueeze.rank_at([(2, 5), (3, 4), (4, 2)], 6, t) for t in range(0, 7)] == [6, 6, 5, 4, 2, 2, 2]
    # a window longer than R − K: R = 5 → K = 3 over steps 1..10: 3 + ⌈2·(10 − t)/10⌉ is 5 until
    # t = 4, 4 from t = 5 (2·5/10 = 1) and 3 only at S2
    assert insqueeze.schedule(5, 3, 1, 10) == [(5, 4), (10, 3)]
    # against the real-valued line, for a grid of (R, K, S1, S2): never below it, under it + 1, K at S2
    for r, k, s1, s2 in [(64, 16, 8, 22), (16, 4, 3, 3), (9, 1, 1, 40), (7, 6, 2, 5)]:
        drops = insqueeze.schedule(r, k, s1, s2)
        for t in range(s1, s2 + 1):
            line = k + (r - k) * (s2 - t) / (s2 - s1 + 1)
            assert line <= insqueeze.rank_at(drops, r, t) < line + 1
        assert drops[-1] == (s2, k) and all(a[1] > b[1] for a, b in zip(drops, drops[1:]))


def test_truncated_factors_are_numpys_best_rank_k():
    rng = np.random.default_rng(0)
    B, A = rng.standard_normal((40, 7)), rng.standard_normal((7, 30))
    b, a = insqueeze.truncated_factors(B, A, 3)
    U, s, Vt = np.linalg.svd(B @ A)
    np.testing.assert_allclose(b @ a, (U[:, :3] * s[:3]) @ Vt[:3], rtol=0, atol=1e-10)
    assert b.shape == (40, 3) and a.shape == (3, 30)


def test_checkpoints_load_in_peft_at_the_recorded_rank(insqueezed):
    record = json.loads((insqueezed / CONFIG_FILE).read_text())
    plan = record["in_squeeze"]
    assert (plan["from"], plan["to"], plan["steps"], plan["schedule"]) == (R, K, [2, 4], "linear")
    assert plan["ranks"] == [[2, 5], [3, 4], [4, 2]] and plan["scale"] == ALPHA / R
    log = [json.loads(line) for line in (insqueezed / LOSS_FILE).read_text().splitlines()]
    recorded = {row["step"]: row["rank"] for row in log}
    found = {}
    for ckpt in sorted(insqueezed.glob("checkpoint-*")):
        step = int(ckpt.name.split("-")[1])
        adapter = json.loads((ckpt / "adapter_config.json").read_text())
        model = _peft(record["base_model"], ckpt)
        layers = _lora_layers(model)
        assert sorted(n.removeprefix("base_model.model.") for n in layers) == sorted(record["trained_modules"])
        ranks = {m.lora_A["default"].weight.shape[0] for m in layers.values()} | {m.r["default"] for m in layers.values()}
        assert len(ranks) == 1, f"{ckpt}: modules at different ranks {ranks}"
        found[step] = ranks.pop()
        assert adapter["r"] == found[step]
        # the scale α/r as trained, at every rank
        assert all(math.isclose(m.scaling["default"], ALPHA / R) for m in layers.values())
    # the ranks in the checkpoints are the recorded schedule's (and the loss log's)
    assert found == {t: insqueeze.rank_at([tuple(p) for p in plan["ranks"]], R, t) for t in found}
    assert found == {t: recorded[t] for t in found}
    assert found == {1: 6, 2: 5, 3: 4, 4: 2, 5: 2}


def test_the_last_update_has_rank_at_most_k(insqueezed):
    record = json.loads((insqueezed / CONFIG_FILE).read_text())
    model = _peft(record["base_model"], insqueezed / "checkpoint-5")
    for name, m in _lora_layers(model).items():
        delta = m.get_delta_weight("default").detach().numpy()  # float32, as PEFT computes it
        assert delta.dtype == np.float32
        # numpy's default tolerance for float32 (σ_max·max(m, n)·eps): PEFT's product is rounded in float32
        assert np.linalg.matrix_rank(delta) <= K, name
        assert np.linalg.norm(delta) > 0, f"{name}: the update vanished"


def test_a_truncation_is_the_best_rank_k_of_the_update_before(insqueezed):
    """truncate() on the PEFT model of checkpoint-1 (rank 6): PEFT's ΔW afterwards equals numpy's
    rank-4 truncation of PEFT's ΔW before, module by module, at the same scale."""
    record = json.loads((insqueezed / CONFIG_FILE).read_text())
    model = _peft(record["base_model"], insqueezed / "checkpoint-1")
    before = {n: m.get_delta_weight("default").detach().double().numpy() for n, m in _lora_layers(model).items()}
    insqueeze.truncate(model, 4)
    assert model.peft_config["default"].r == 4 and model.peft_config["default"].lora_alpha == pytest.approx(ALPHA / R * 4)
    for name, m in _lora_layers(model).items():
        U, s, Vt = np.linalg.svd(before[name])
        expected = (U[:, :4] * s[:4]) @ Vt[:4]
        got = m.get_delta_weight("default").detach().double().numpy()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * np.abs(before[name]).max())
        # a forward pass runs at the new rank
    x = torch.ones(1, 5, dtype=torch.long)
    model(input_ids=x, attention_mask=torch.ones_like(x))


def test_bad_schedules_are_one_line_errors():
    for options, words in [({"squeeze_to": 8, "r": 8}, "below --r"), ({"squeeze_to": 2, "r": 8, "squeeze_steps": (5, 3)}, "S1 ≤ S2"),
                           ({"squeeze_steps": (1, 2)}, "--squeeze-to"), ({"squeeze_to": 2, "method": "dora"}, "--squeeze-to"),
                           ({"squeeze_to": 2, "r": 8, "squeeze_steps": (1, 200)}, "--steps")]:
        with pytest.raises(InputError, match=words.replace("(", r"\(")):
            FinetuneConfig(out="x", **options).validate()


def test_cli_squeeze_to_on_the_tiny_llama_with_rslora(tmp_path, tiny_llama_dir, texts_file):
    from lab.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "finetune", "--model", str(tiny_llama_dir), "--texts", str(texts_file), "--r", "4", "--alpha", "8", "--rslora",
        "--squeeze-to", "1", "--squeeze-steps", "2:3", "--steps", "3", "--save-every", "1", "--batch-size", "4",
        "--max-length", "16", "--lr", "0.01", "--out", str(out)])
    assert result.exit_code == 0, result.output
    adapter = json.loads((out / "checkpoint-3" / "adapter_config.json").read_text())
    # rsLoRA's scale α/√r kept: lora_alpha = (8/√4)·√1
    assert adapter["r"] == 1 and adapter["use_rslora"] and adapter["lora_alpha"] == pytest.approx(8 / 2 * 1)
    bad = CliRunner().invoke(app, ["finetune", "--model", str(tiny_llama_dir), "--texts", str(texts_file), "--r", "4",
                                   "--squeeze-to", "1", "--squeeze-steps", "two", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1 and "S1:S2" in bad.output
