"""The tensor index (from headers and index json) against what the safetensors library itself
reads, and the lazy loader: float64 values equal to torch's upcast, one file open at a time."""

from __future__ import annotations

import numpy as np
import psutil
import torch
from safetensors import safe_open

import builders
from lab.checkpoints.index import TensorIndex
from lab.checkpoints.loader import TensorLoader
from lab.checkpoints.safetensors_header import read_header


def test_header_matches_safetensors_library(tmp_path):
    path = builders.save(builders.tiny_llama(seed=0, dtype=torch.bfloat16), tmp_path / "m") / "model.safetensors"
    header = read_header(path)
    with safe_open(str(path), framework="pt") as f:
        assert sorted(header) == sorted(f.keys())
        for key in f.keys():
            s = f.get_slice(key)
            assert header[key].shape == tuple(s.get_shape()) and header[key].dtype == s.get_dtype() == "BF16"
            assert header[key].floating


def _held(files) -> set:
    """The files of ``files`` this process holds open or memory-mapped (from /proc, not the loader)."""
    names = {str(f.resolve()) for f in files}
    held = {f.path for f in psutil.Process().open_files() if f.path in names}
    with open("/proc/self/maps") as maps:
        held |= {line.split(maxsplit=5)[-1].strip() for line in maps if line.rstrip().endswith(tuple(names))}
    return held & names


def test_sharded_index_and_loader_open_one_file_at_a_time(tmp_path):
    model = builders.tiny_llama(seed=0)
    folder = builders.save(model, tmp_path / "m", max_shard_size="20KB")
    index = TensorIndex.from_index_json(folder / "model.safetensors.index.json")
    state = model.state_dict()
    assert sorted(index.keys()) == sorted(state)
    shards = {i.file for i in index.tensors.values()}
    assert index.files[0].name == "model.safetensors.index.json" and len(shards) > 1
    with TensorLoader() as loader:
        for key in index.keys():
            value = loader.get(index[key])
            assert value.dtype == np.float64 and np.array_equal(value, state[key].double().numpy())
            assert _held(shards) == set()  # floating tensors are read by pread: no shard stays open or mapped


def test_loader_falls_back_to_safe_open_one_file_at_a_time(tmp_path):
    """Tensors of a dtype pread does not convert (integers here) go through safetensors' own reader,
    which maps the file: the loader keeps at most one file mapped, and lets go of it when closed."""
    from safetensors.torch import save_file

    files = []
    for i in range(2):
        save_file({"ids": torch.arange(6, dtype=torch.int64).reshape(2, 3) * (i + 1)}, tmp_path / f"s{i}.safetensors")
        files.append(tmp_path / f"s{i}.safetensors")
    seen = set()
    with TensorLoader() as loader:
        for i, path in enumerate(files):
            info = read_header(path)["ids"]
            assert np.array_equal(loader.get(info), np.arange(6.0).reshape(2, 3) * (i + 1))
            held = _held(files)
            assert len(held) <= 1, held
            seen |= held
    assert _held(files) == set()
    assert len(seen) >= 1  # the check above saw the mapped file: it is not vacuous


def test_pickle_index_and_loader(tmp_path):
    state = builders.tiny_gpt2(seed=0).state_dict()
    torch.save(state, tmp_path / "pytorch_model.bin")
    index = TensorIndex.from_files([tmp_path / "pytorch_model.bin"])
    with TensorLoader() as loader:
        for key, t in state.items():
            assert index[key].shape == tuple(t.shape)
            assert np.array_equal(loader.get(index[key]), t.double().numpy())
