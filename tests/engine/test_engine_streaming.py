"""Streaming: a run that reads every dense update in blocks from disk (never whole) gives the same
tables as one that holds them in memory, controls included; NaN/inf found while streaming is the
same one-line error, or NaN rows with --allow-nonfinite."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

import builders
import lab
from lab.errors import NonFiniteError


def _numeric_equal(a: pd.DataFrame, b: pd.DataFrame, name: str) -> None:
    assert list(a.columns) == list(b.columns) and len(a) == len(b), name
    for col in a.columns:
        if pd.api.types.is_float_dtype(a[col]):
            np.testing.assert_allclose(a[col].to_numpy(float), b[col].to_numpy(float), rtol=1e-8, atol=1e-9,
                                       err_msg=f"{name}.{col}")
        else:
            assert a[col].tolist() == b[col].tolist(), f"{name}.{col}"


def test_streamed_run_equals_in_memory_run(tmp_path, engine_inputs):
    kwargs = dict(base=engine_inputs["base"], controls=True, progress=False, targets=["delta", "weight"])
    memory = lab.analyze(engine_inputs["train"] / "checkpoint-20", out=tmp_path / "m", stream_bytes=None, **kwargs)
    streamed = lab.analyze(engine_inputs["train"] / "checkpoint-20", out=tmp_path / "s", stream_bytes=0, **kwargs)
    assert memory.tables() == streamed.tables()
    for t in memory.tables():
        _numeric_equal(memory.table(t), streamed.table(t), t)
    spectra = streamed.table("spectra")
    assert spectra[spectra.source == "delta"].overlap_k.notna().all()  # alignment with W from the blocked Grams


def test_nonfinite_found_while_streaming(tmp_path, engine_inputs):
    ft = tmp_path / "ft"
    builders.save(builders.perturb(builders.tiny_llama(seed=0), seed=3), ft)
    weights = load_file(ft / "model.safetensors")
    key = "model.layers.1.mlp.up_proj.weight"
    weights[key][3, 4] = float("nan")
    save_file(weights, ft / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(NonFiniteError) as e:
        lab.analyze(ft, base=engine_inputs["base"], out=tmp_path / "a", stream_bytes=0, progress=False)
    assert str(ft / "model.safetensors") in str(e.value) and key in str(e.value) and "\n" not in str(e.value)
    run = lab.analyze(ft, base=engine_inputs["base"], out=tmp_path / "b", stream_bytes=0, allow_nonfinite=True,
                      progress=False)
    ent = run.table("entanglement")
    bad = ent[ent.module == "model.layers.1.mlp.up_proj"]
    good = ent[ent.module == "model.layers.1.mlp.down_proj"]
    assert bad.entropy.isna().all() and good.entropy.notna().all()
    assert torch.get_default_dtype() == torch.float32
