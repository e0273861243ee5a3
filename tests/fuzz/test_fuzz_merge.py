"""``lab merge`` on damaged inputs: two adapters of one base, one of them damaged (its
adapter_config.json or its safetensors file). The contract is the CLI's: exit 0 with a merged
adapter and its merge table, or exit 2 with exactly one stderr line naming the damaged file, and
no merged adapter left behind. In-process through typer's runner (the same ``user_errors`` wrapper
the console script runs), so examples are cheap."""

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



def merge_contract(work: Path, adapters: list[Path], blamed: Path, method: str) -> int:
    out = work / "merged"
    rank = ["--rank", "4"] if method in ("svd", "lego") else []
    result = CliRunner().invoke(app, ["merge", *map(str, adapters), "--out", str(out), "--method", method, *rank,
                                      "--results", str(work / "results")])
    if result.exit_code == 0:
        config = json.loads((out / "adapter_config.json").read_text())
        assert config["peft_type"] == "LORA"
        # what was written is usable: finite weights, finite errors (a merge of α = 1e308 stored in
        # float32 would overflow to inf)
        weights = load_file(out / "adapter_model.safetensors")
        assert all(np.isfinite(t.numpy()).all() for t in weights.values()), "non-finite merged weights"
        table = pd.read_parquet(work / "results" / "merges" / "merge.parquet")
        numbers = table.select_dtypes("number").to_numpy(dtype=float)
        assert not np.isinf(numbers).any(), table
        return 0
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error: "), result.stderr
    assert names(lines[0], blamed), f"names not {blamed}: {lines[0]}"
    assert not out.exists() or not any(out.iterdir()), "a merged adapter was written before the error"
    return 2


@budget(0.5)
@given(mutation=mutations, method=st.sampled_from(["stack", "linear", "svd", "lego"]))
def test_merge_with_one_damaged_adapter(llama_lora, mutation, method):
    with workspace() as work:
        work = Path(work)
        first = copy_inputs(llama_lora, work / "a").ckpt
        second = copy_inputs(llama_lora, work / "b").ckpt
        victim = damage_adapter(second, mutation)
        event(f"exit {merge_contract(work, [first, second], victim, method)}")
