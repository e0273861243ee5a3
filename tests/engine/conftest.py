"""Shared inputs of the engine tests: real tiny checkpoints on disk and one Dask cluster on loopback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from peft import LoraConfig, get_peft_model

import builders

sys.path.insert(0, str(Path(__file__).parent))
import scope_probes  # noqa: E402


@pytest.fixture(scope="session")
def engine_inputs(tmp_path_factory):
    """A base, a training output with 3 full checkpoints, and two LoRA adapters of the same base."""
    root = tmp_path_factory.mktemp("engine")
    base = builders.save(builders.tiny_llama(seed=0), root / "base")
    train = root / "train"
    for i, step in enumerate((10, 20, 30)):
        builders.save(builders.perturb(builders.tiny_llama(seed=0), seed=10 + i, eps=1e-2 * (i + 1)),
                      train / f"checkpoint-{step}")
    adapters = []
    for i in range(2):
        model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        builders.randomize_lora(model, seed=20 + i)
        model.save_pretrained(root / f"adapter{i}")
        adapters.append(root / f"adapter{i}")
    return {"root": root, "base": base, "train": train, "adapters": adapters}


@pytest.fixture()
def scope_probe_set():
    scope_probes.install()
    yield scope_probes
    scope_probes.uninstall()


@pytest.fixture(scope="session")
def dask_cluster():
    """A real Dask LocalCluster of 2 single-threaded worker processes on 127.0.0.1."""
    from distributed import Client

    from lab.engine.executors import local_cluster

    cluster = local_cluster(2)  # the cluster --workers 2 starts
    client = Client(cluster)
    yield cluster
    client.close()
    cluster.close()
