"""Damaged checkpoint folders meet the contract through ``lab.analyze``: weight files deleted,
emptied or replaced by folders, dangling and looping symlinks, garbage ``config.json`` and
``trainer_state.json``, stray ``checkpoint-N`` entries, extra weight files next to the real ones."""

from __future__ import annotations

import shutil
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from fuzz_helpers import analyze_contract, budget, copy_inputs, dumps, json_values, workspace

NAMES = ("model.safetensors", "adapter_model.safetensors", "adapter_config.json", "config.json", "pytorch_model.bin",
         "adapter_model.bin", "model.safetensors.index.json", "trainer_state.json", "extra.safetensors",
         "checkpoint-5", "checkpoint-10", "checkpoint-x", "weights.pt")

ops = st.one_of(
    st.tuples(st.just("delete"), st.sampled_from(NAMES)),
    st.tuples(st.just("empty"), st.sampled_from(NAMES)),
    st.tuples(st.just("folder"), st.sampled_from(NAMES)),
    st.tuples(st.just("garbage"), st.sampled_from(NAMES), st.binary(max_size=32)),
    st.tuples(st.just("json"), st.sampled_from(("config.json", "trainer_state.json", "adapter_config.json")),
              json_values | st.fixed_dictionaries({"model_type": json_values}) | st.fixed_dictionaries({"global_step": json_values})),
    st.tuples(st.just("dangling"), st.sampled_from(NAMES)),
    st.tuples(st.just("loop"), st.sampled_from(NAMES)),
    st.tuples(st.just("copy_as"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(st.just("series"), st.sampled_from(("checkpoint-1", "checkpoint-20", "checkpoint-007"))),
)
mutations = st.lists(ops, min_size=1, max_size=3).map(tuple)


def _clear(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def mutate(folder: Path, mutation: tuple) -> None:
    """Apply each operation of ``mutation`` to the checkpoint ``folder``."""
    for op in mutation:
        kind, path = op[0], folder / op[1]
        if kind == "delete":
            _clear(path)
        elif kind == "empty":
            _clear(path)
            path.write_bytes(b"")
        elif kind == "folder":
            _clear(path)
            path.mkdir()
        elif kind == "garbage":
            _clear(path)
            path.write_bytes(op[2])
        elif kind == "json":
            _clear(path)
            path.write_text(dumps(op[2]))
        elif kind == "dangling":
            _clear(path)
            path.symlink_to(folder / "no-such-file")
        elif kind == "loop":
            _clear(path)
            path.symlink_to(path.name)
        elif kind == "copy_as":
            source, target = path, folder / op[2]
            if source.is_file() and source != target:
                _clear(target)
                shutil.copyfile(source, target)
        elif kind == "series":  # a training output: the folder's own files copied into checkpoint-N
            _clear(path)
            shutil.copytree(folder, path, symlinks=True, ignore=shutil.ignore_patterns("checkpoint-*"))


@budget(0.8)
@given(name=st.sampled_from(("llama_full", "llama_lora")), mutation=mutations)
def test_damaged_folder(llama_full, llama_lora, name, mutation):
    """A checkpoint folder with files deleted, emptied, replaced or added: a finite run, or one line naming the folder."""
    with workspace() as work:
        inputs = copy_inputs({"llama_full": llama_full, "llama_lora": llama_lora}[name], work)
        mutate(inputs.ckpt, mutation)
        analyze_contract(work, inputs, [inputs.ckpt, *inputs.ckpt.iterdir()], probes=["deltas"])
