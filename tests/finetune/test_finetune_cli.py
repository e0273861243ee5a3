"""`lab finetune` through the real command line: a run on the tiny LLaMA, and user errors as one
line with exit code 2."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lab.finetune.train import COMPLETE_FILE, CONFIG_FILE


@pytest.fixture(scope="module")
def app():
    from lab.cli import app

    if not any(c.name == "finetune" for c in app.registered_commands):
        pytest.fail("lab.cli does not register the finetune command")
    return app


def test_finetune_command_writes_a_complete_run(app, tmp_path, tiny_llama_dir, texts_file):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "finetune", "--model", str(tiny_llama_dir), "--texts", str(texts_file), "--method", "lora", "--r", "2",
        "--alpha", "4", "--rslora", "--target-modules", "q_proj,k_proj", "--steps", "3", "--save-every", "2",
        "--batch-size", "4", "--max-length", "16", "--lr", "0.01", "--seed", "7", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert (out / COMPLETE_FILE).is_file()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    options = json.loads((out / CONFIG_FILE).read_text())["options"]
    assert (options["r"], options["alpha"], options["rslora"], options["target_modules"], options["seed"]) == (2, 4.0, True, ["q_proj", "k_proj"], 7)
    adapter = json.loads((out / "checkpoint-3" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["k_proj", "q_proj"] and adapter["use_rslora"] is True

    again = CliRunner().invoke(app, ["finetune", "--model", str(tiny_llama_dir), "--texts", str(texts_file), "--out", str(out)])
    assert again.exit_code == 2
    lines = again.output.strip().splitlines()
    assert len(lines) == 1 and "--overwrite" in lines[0]


@pytest.mark.parametrize("args, message", [
    (["--method", "qlora"], "--method"),
    (["--model", "/no/such/model"], "no such model folder"),
    (["--texts", "/no/such/file.txt"], "no such text file"),
    (["--batch-size", "1"], "--batch-size"),
    (["--method", "ia3", "--r", "4"], "--r does not apply"),
    (["--method", "loha", "--budget", "10"], "--budget 10"),
])
def test_user_errors_are_one_line_and_exit_2(app, tmp_path, tiny_llama_dir, args, message):
    base = ["finetune", "--model", str(tiny_llama_dir), "--out", str(tmp_path / "x"), "--steps", "1"]
    result = CliRunner().invoke(app, base + args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_budget_prints_what_it_picked(app, tmp_path, tiny_llama_dir, texts_file):
    out = tmp_path / "dora"
    result = CliRunner().invoke(app, [
        "finetune", "--model", str(tiny_llama_dir), "--texts", str(texts_file), "--method", "dora", "--budget", "2000",
        "--steps", "1", "--save-every", "1", "--batch-size", "2", "--max-length", "8", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    record = json.loads((out / CONFIG_FILE).read_text())
    picked = [line for line in result.output.splitlines() if "--budget 2,000 picked r =" in line]
    assert len(picked) == 1 and f"r = {record['budget']['size']} ({record['trainable_parameters']:,} trainable" in picked[0]
    assert record["trainable_parameters"] <= 2000 < record["budget"]["next_trainable"]
    assert record["peft_config"]["r"] == record["budget"]["size"] and record["peft_config"]["use_dora"] is True


def test_demo_command_is_registered(app):
    result = CliRunner().invoke(app, ["demo", "--help"])
    assert result.exit_code == 0 and "--workdir" in result.output
