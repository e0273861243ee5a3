"""The base's part of the attention probe kept on disk (``reuse_base``): a later run on the same base
reads it instead of running the base again, and its tables are exactly those of a run that computed
it; a changed input, option or text is a new address; a failed computation leaves no entry."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import pandas as pd
import pytest
import torch
from peft import LoraConfig, get_peft_model

import builders
import lab
from builders import texts_file, word_tokenizer
from lab.probes.kept_base import address_of, kept
from lab.store import open_run

MODULES = ("lab.probes.attention",)
ATTENTION_TABLES = ("attention_entanglement", "attention_token_cuts", "attention_token_fits", "attention_summary", "windows")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny LLaMA base with a tokenizer, two LoRA adapters of it, and texts."""
    root = tmp_path_factory.mktemp("kept")
    base = builders.save(builders.tiny_llama(seed=0), root / "base")
    word_tokenizer(base)
    adapters = []
    for seed in (5, 6):
        model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        builders.randomize_lora(model, seed=seed, std=0.2)
        model.save_pretrained(root / f"lora{seed}")
        adapters.append(root / f"lora{seed}")
    texts, _ = texts_file(root / "texts.txt")
    return {"base": base, "adapters": adapters, "texts": texts}


def _analyze(inputs, adapter, out, run, attention: dict):
    """One attention analysis of ``adapter``, and the number of forward passes its models made."""
    from transformers import LlamaForCausalLM

    calls = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, a, o: calls.append(1) if isinstance(m, LlamaForCausalLM) else None)
    try:
        result = lab.analyze(adapter, base=inputs["base"], out=out, run=run, probes=["attention"], texts=inputs["texts"],
                             options={"attention": {"seq_len": (8, 16), "windows": 2, **attention}}, progress=False)
    finally:
        handle.remove()
    return result, len(calls)


def _equal_tables(a, b) -> None:
    for table in ATTENTION_TABLES:
        x, y = (r.table(table).drop(columns=["run"]) for r in (a, b))
        pd.testing.assert_frame_equal(x, y, check_exact=True)


def test_a_later_run_reads_the_kept_base_and_its_tables_equal_a_computed_one(tmp_path, inputs):
    keep = {"cache_dir": str(tmp_path / "kept"), "reuse_base": True}
    for adapter in inputs["adapters"]:
        _, passes = _analyze(inputs, adapter, tmp_path / "plain", adapter.name, {})
        assert passes == 4 * 2  # 2 lengths × 2 windows, for the base and for the checkpoint
    first, passes_first = _analyze(inputs, inputs["adapters"][0], tmp_path / "first", "a", keep)
    second, passes_second = _analyze(inputs, inputs["adapters"][1], tmp_path / "second", "b", keep)
    assert passes_first == 4 * 2 and passes_second == 4  # the second run ran only its checkpoint
    assert len(list((tmp_path / "kept").glob("attention-base-*"))) == 1
    _equal_tables(first, open_run(tmp_path / "plain" / inputs["adapters"][0].name))
    _equal_tables(second, open_run(tmp_path / "plain" / inputs["adapters"][1].name))

    # other windows: another address, computed (the base runs again) and kept beside the first
    _, passes = _analyze(inputs, inputs["adapters"][0], tmp_path / "third", "c", {**keep, "windows": 1})
    assert passes == 2 * 2 and len(list((tmp_path / "kept").glob("attention-base-*"))) == 2


def test_reuse_base_needs_a_folder():
    from lab.probes.attention import AttentionOptions

    with pytest.raises(ValueError, match="cache_dir"):
        AttentionOptions(reuse_base=True)


@dataclass(frozen=True)
class _Options:
    seq_len: tuple = (8, 16)
    windows: int = 2
    cache_dir: str = ""


def test_the_address_changes_with_the_base_files_the_texts_and_the_options_not_with_the_folder(tmp_path, inputs):
    base = tmp_path / "base"
    shutil.copytree(inputs["base"], base)
    texts = ["one text", "another"]
    first = address_of(base, texts, _Options(), MODULES, leave_out=("cache_dir",))
    assert address_of(base, texts, _Options(cache_dir="/elsewhere"), MODULES, leave_out=("cache_dir",)) == first
    assert address_of(base, texts, _Options(windows=3), MODULES, leave_out=("cache_dir",)) != first
    assert address_of(base, texts + ["more"], _Options(), MODULES, leave_out=("cache_dir",)) != first
    config = base / "config.json"
    config.write_text(config.read_text() + " ")  # one byte more in one file of the base
    assert address_of(base, texts, _Options(), MODULES, leave_out=("cache_dir",)) != first


def test_an_entry_is_found_only_once_its_block_ended_without_an_error(tmp_path):
    with pytest.raises(RuntimeError):
        with kept(tmp_path, "probe", "abc") as entry:
            assert not entry.found
            (entry.folder / "part.npy").write_bytes(b"half")
            raise RuntimeError("the computation failed")
    assert not (tmp_path / "probe-base-abc").exists() and not list(tmp_path.glob(".probe-base-*/"))
    with kept(tmp_path, "probe", "abc") as entry:
        assert not entry.found
        (entry.folder / "part.npy").write_bytes(b"whole")
    with kept(tmp_path, "probe", "abc") as entry:
        assert entry.found and entry.folder == entry.home == tmp_path / "probe-base-abc"
        assert (entry.folder / "part.npy").read_bytes() == b"whole"


def test_the_source_in_the_address_is_the_probes_and_what_it_imports():
    """An edit to a module the attention probe does not import (another probe, a merge kernel) keeps its address."""
    from lab.probes.kept_base import source_files

    names = {str(f.relative_to(f.parents[1])) for f in source_files("lab.probes.attention")}
    assert {"probes/attention.py", "probes/token_cuts.py", "probes/windows.py", "probes/forward.py",
            "kernels/profile.py", "kernels/page.py"} <= names
    assert not names & {"probes/spectra.py", "kernels/task_vectors.py", "probes/__init__.py", "kernels/__init__.py"}
