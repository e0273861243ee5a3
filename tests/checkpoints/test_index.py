"""The tensor index (from headers and index json) against what the safetensors library itself
reads, and the lazy loader: float64 values equal to torch's upcast, one file open at a time."""

from __future__ import annotations

import numpy as np
import torch
from safetensors import safe_open

import builders
from lab.checkpoints.index import TensorIndex
from lab.checkpoints.loader import LazyLoader
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


def test_sharded_index_and_loader_open_one_file_at_a_time(tmp_path):
    model = builders.tiny_llama(seed=0)
    folder = builders.save(model, tmp_path / "m", max_shard_size="20KB")
    index = TensorIndex.from_index_json(folder / "model.safetensors.index.json")
    state = model.state_dict()
    assert sorted(index.keys()) == sorted(state)
    assert index.files[0].name == "model.safetensors.index.json" and len({i.file for i in index.tensors.values()}) > 1
    opened = []
    with LazyLoader(index) as loader:
        for key in index.keys():
            value = loader.get(key)
            assert value.dtype == np.float64 and np.array_equal(value, state[key].double().numpy())
            opened.append(loader._path)
            assert loader._path == index[key].file  # the only file held is the one just read
    assert len(set(opened)) == len({i.file for i in index.tensors.values()})


def test_pickle_index_and_loader(tmp_path):
    state = builders.tiny_gpt2(seed=0).state_dict()
    torch.save(state, tmp_path / "pytorch_model.bin")
    index = TensorIndex.from_files([tmp_path / "pytorch_model.bin"])
    with LazyLoader(index) as loader:
        for key, t in state.items():
            assert index[key].shape == tuple(t.shape)
            assert np.array_equal(loader.get(key), t.double().numpy())
