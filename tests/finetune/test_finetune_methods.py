"""The PEFT family through `lab finetune --method NAME`: each method trains on MiniLM's query and
value, saves a checkpoint that PEFT itself loads as that method, and trains the same weights
again from the same seed; `--budget P` picks the largest size whose real trainable count fits,
checked by building the model with PEFT directly; `lab analyze` reads a new method's checkpoint."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finetune_helpers import run
from lab.errors import InputError
from lab.finetune import FinetuneConfig
from lab.finetune.models import load_model, minilm_path, resolve_base
from lab.finetune.train import CONFIG_FILE, LOSS_FILE

NEW = ("dora", "adalora", "loha", "lokr", "vera", "ia3", "boft")
PEFT_TYPE = {"dora": "LORA", "adalora": "ADALORA", "loha": "LOHA", "lokr": "LOKR", "vera": "VERA", "ia3": "IA3", "boft": "BOFT"}
# Small enough that two steps take about a second per method on one thread
TINY = dict(model="minilm", steps=2, save_every=2, batch_size=4, max_length=12)


@pytest.fixture(scope="session")
def method_run(tmp_path_factory, texts_file):
    """A function: method -> its two-step MiniLM run (trained once per session)."""
    runs: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("methods")

    def get(method: str) -> Path:
        if method not in runs:
            runs[method] = run(root / method, method=method, texts=str(texts_file), r=2 if method not in ("ia3", "boft") else None, **TINY)
        return runs[method]

    return get


def _peft_load(ckpt: Path):
    from peft import PeftModel

    model, _ = load_model(resolve_base("minilm"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PeftModel.from_pretrained(model, ckpt).eval()


@pytest.mark.parametrize("method", NEW)
def test_method_trains_saves_peft_checkpoint_and_repeats_with_the_same_seed(method, method_run, tmp_path):
    out = method_run(method)
    record = json.loads((out / CONFIG_FILE).read_text())
    rows = [json.loads(line) for line in (out / LOSS_FILE).read_text().splitlines()]
    assert len(rows) == 2 and all(math.isfinite(row["loss"]) for row in rows)
    # AdaLoRA's orthogonality penalty is trained on and logged apart from the objective's loss
    assert all(math.isfinite(row["orth_penalty"]) and row["orth_penalty"] > 0 for row in rows) if method == "adalora" \
        else not any("orth_penalty" in row for row in rows)
    assert record["method"] == method and record["peft_config"]["peft_type"] == PEFT_TYPE[method]
    assert record["peft_config"]["use_dora"] is True if method == "dora" else True

    ckpt = out / "checkpoint-2"
    model = _peft_load(ckpt)
    assert model.peft_config["default"].peft_type.value == PEFT_TYPE[method]
    adapted = sorted(n.removeprefix("base_model.model.") for n, m in model.named_modules()
                     if n and type(m).__module__.startswith("peft.tuners.") and hasattr(m, "get_base_layer"))
    assert adapted == record["trained_modules"] and len(adapted) == 12
    assert {n.rsplit(".", 1)[-1] for n in adapted} == {"query", "value"}

    # the checkpoint carries what training did: PEFT's merged weights differ from the base's in
    # the adapted modules (each method starts at ΔW = 0) and nowhere else (IA3 scales the bias too)
    base = load_file(minilm_path() / "model.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        merged = model.merge_and_unload().state_dict()
    changed = sorted(k.rsplit(".", 1)[0] for k, v in merged.items() if k in base and not torch.equal(v, base[k]))
    assert set(changed) <= set(adapted) and changed, f"{method}: no weight moved"

    # same seed, same weights
    again = run(tmp_path / "again", **{k: v for k, v in record["options"].items() if k not in ("out", "lr")}, lr=record["options"]["lr"])
    a, b = load_file(ckpt / "adapter_model.safetensors"), load_file(again / "checkpoint-2" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _peft_direct(method: str, size: int, lokr_factor: int):
    """PEFT's config at ``size``, written here without the lab's builder (AdaLoRA at its final rank)."""
    import peft

    t = ["query", "value"]
    return {
        "lora": lambda: peft.LoraConfig(r=size, target_modules=t),
        "dora": lambda: peft.LoraConfig(r=size, target_modules=t, use_dora=True),
        "adalora": lambda: peft.AdaLoraConfig(init_r=size, target_r=size, total_step=4, target_modules=t),
        "loha": lambda: peft.LoHaConfig(r=size, target_modules=t),
        "lokr": lambda: peft.LoKrConfig(r=size, decompose_factor=lokr_factor, target_modules=t),
        "vera": lambda: peft.VeraConfig(r=size, target_modules=t),
        "boft": lambda: peft.BOFTConfig(boft_block_size=size, target_modules=t),
        "ia3": lambda: peft.IA3Config(target_modules=t, feedforward_modules=[]),
    }[method]()


def _real_count(method: str, size: int, lokr_factor: int) -> int:
    from peft import get_peft_model

    model, _ = load_model(resolve_base("minilm"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(model, _peft_direct(method, size, lokr_factor))
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and ".ranknum." not in n)


@pytest.mark.parametrize("method", ("lora",) + NEW)
def test_budget_picks_the_largest_size_that_fits(method):
    from lab.finetune.methods import SIZE_OPTION, pick_sizes

    budget = 30_000
    config = FinetuneConfig(out="unused", method=method, budget=budget)
    config.validate()
    sizes, pick = pick_sizes(config, resolve_base("minilm"))
    if SIZE_OPTION[method] is None:  # ia3: a fixed count, checked to fit
        assert pick.size is None and pick.trainable == _real_count(method, 0, -1) <= budget
        with pytest.raises(InputError, match="no size"):
            pick_sizes(FinetuneConfig(out="unused", method=method, budget=pick.trainable - 1), resolve_base("minilm"))
        return
    size = sizes.block_size if method == "boft" else sizes.r
    assert size == pick.size and pick.next_size is not None
    assert _real_count(method, size, sizes.lokr_factor) == pick.trainable <= budget
    assert _real_count(method, pick.next_size, sizes.lokr_factor) == pick.next_trainable > budget
    assert f"{SIZE_OPTION[method]} = {size}" in pick.line() and "\n" not in pick.line()
    with pytest.raises(InputError, match="--budget 10"):
        pick_sizes(FinetuneConfig(out="unused", method=method, budget=10), resolve_base("minilm"))


def test_budget_is_recorded_and_trains_the_picked_count(tmp_path, texts_file):
    lines = []
    from lab.finetune import finetune

    out = finetune(FinetuneConfig(out=str(tmp_path / "vera"), method="vera", budget=6_000, texts=str(texts_file),
                                  **{**TINY, "steps": 1, "save_every": 1}), on_pick=lines.append)
    record = json.loads((out / CONFIG_FILE).read_text())
    assert len(lines) == 1 and record["budget"]["budget"] == 6_000 and record["options"]["budget"] == 6_000
    assert record["trainable_parameters"] == record["budget"]["trainable"] <= 6_000
    assert record["peft_config"]["r"] == record["budget"]["size"]
    assert record["options"]["r"] is None  # the options as given: the budget, not the pick, so a rerun matches


@pytest.mark.parametrize("options, message", [
    (dict(method="ia3", r=4), "--r does not apply"),
    (dict(method="lora", chi=4), "--chi does not apply"),
    (dict(method="lora", block_size=4), "--block-size does not apply"),
    (dict(method="vera", alpha=4.0), "--alpha does not apply"),
    (dict(method="loha", dropout=0.1), "--dropout does not apply"),
    (dict(method="full", budget=1000), "--budget does not apply"),
    (dict(method="lora", budget=1000, r=4), "pass one or the other"),
    (dict(method="lokr", lokr_factor=0), "--lokr-factor"),
    (dict(method="qlora"), "--method"),
])
def test_options_that_do_not_apply_are_one_line_errors(options, message):
    with pytest.raises(InputError, match=message) as error:
        FinetuneConfig(out="unused", **options).validate()
    assert "\n" not in str(error.value)


def test_lab_analyze_reads_a_new_method_checkpoint(method_run, tmp_path):
    """`lab analyze <checkpoint> --base <MiniLM>` on a LoHa checkpoint: one row per adapted module,
    its ‖ΔW‖_F equal to PEFT's own update."""
    from typer.testing import CliRunner

    from lab.cli import app
    from lab.store import open_run

    ckpt = method_run("loha") / "checkpoint-2"
    result = CliRunner().invoke(app, ["analyze", str(ckpt), "--base", str(minilm_path()), "--out", str(tmp_path / "res"),
                                      "--run", "loha", "--probes", "deltas"])
    assert result.exit_code == 0, result.output
    deltas = open_run(tmp_path / "res" / "loha").table("deltas")
    model = _peft_load(ckpt)
    expected = {n.removeprefix("base_model.model."): float(torch.linalg.norm(m.get_delta_weight("default").double()))
                for n, m in model.named_modules() if hasattr(m, "hada_w1_a") and n}
    got = deltas.set_index("module").fro_norm.to_dict()
    assert got.keys() == expected.keys() and len(got) == 12
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-5)
