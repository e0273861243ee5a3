"""``lab squeeze`` on damaged inputs: a PEFT adapter whose adapter_config.json or safetensors file
is damaged, squeezed to a rank or an energy. The CLI's contract: exit 0 with a squeezed adapter of
finite weights and a finite squeeze table, or exit 2 with one stderr line naming the damaged file
and no squeezed adapter left behind. In-process through typer's runner (the console script's
``user_errors`` wrapper)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import event, given
from hypothesis import strategies as st
from safetensors.torch import load_file
from typer.testing import CliRunner

from fuzz_helpers import budget, copy_inputs, names, workspace
from fuzz_adapters import adapter_mutations as mutations, damage_adapter
from lab.cli import app

targets = st.one_of(st.integers(1, 6).map(lambda k: ["--rank", str(k)]),
                    st.sampled_from([0.5, 0.9, 0.99, 1.0]).map(lambda e: ["--energy", str(e)]))


def squeeze_contract(work: Path, adapter: Path, blamed: Path, target: list[str]) -> int:
    out = work / "squeezed"
    result = CliRunner().invoke(app, ["squeeze", str(adapter), "--out", str(out), *target, "--results", str(work / "results")])
    if result.exit_code == 0:
        assert json.loads((out / "adapter_config.json").read_text())["peft_type"] == "LORA"
        weights = load_file(out / "adapter_model.safetensors")
        assert all(np.isfinite(t.numpy()).all() for t in weights.values()), "non-finite squeezed weights"
        table = pd.read_parquet(next((work / "results").rglob("squeeze.parquet")))
        assert not np.isinf(table.select_dtypes("number").to_numpy(dtype=float)).any(), table
        return 0
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error: "), result.stderr
    assert names(lines[0], blamed) or "--rank" in lines[0] or "--energy" in lines[0], f"names not {blamed}: {lines[0]}"
    assert not out.exists() or not any(out.iterdir()), "a squeezed adapter was written before the error"
    return 2


@budget(0.5)
@given(mutation=mutations, target=targets)
def test_squeeze_a_damaged_adapter(llama_lora, mutation, target):
    with workspace() as work:
        work = Path(work)
        adapter = copy_inputs(llama_lora, work).ckpt
        victim = damage_adapter(adapter, mutation)
        event(f"exit {squeeze_contract(work, adapter, victim, target)}")
