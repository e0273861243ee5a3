"""``lab squeeze --base BASE --steps N`` through the command line on a real full fine-tune of MiniLM:
the update W_ft − W_base is squeezed to rank k (randomized SVD), its error sits at numpy's optimal
truncation error, the table and the adapter are what the library call writes, and Cont-Squeeze
trains N more steps on the source run's corpus from the squeezed adapter (issue 27 item 6)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import load_file

from lab.finetune.models import minilm_path
from lab.finetune.train import CONFIG_FILE, LOSS_FILE, is_complete


def test_squeeze_base_and_steps_through_the_cli(tmp_path, minilm_full):
    lab = str(Path(sys.executable).with_name("lab"))
    source, base, k = minilm_full / "checkpoint-2", minilm_path(), 2
    done = subprocess.run([lab, "squeeze", str(source), "--base", str(base), "--rank", str(k), "--steps", "1",
                           "--out", str(tmp_path / "sq"), "--results", str(tmp_path / "res")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"1 more steps in {tmp_path / 'sq-steps'}" in done.stdout, done.stdout

    # the table: every trained module, each at rank k with an error at numpy's optimum for that rank
    table = pd.read_parquet(tmp_path / "res" / "squeezes" / "squeeze.parquet").set_index("module")
    tuned, original = load_file(source / "model.safetensors"), load_file(base / "model.safetensors")
    changed = {key.removesuffix(".weight") for key in tuned if key.endswith(".weight") and key in original
               and tuned[key].ndim == 2 and not np.array_equal(tuned[key], original[key])}
    assert changed and set(table.index) == changed
    for module in changed:
        delta = tuned[f"{module}.weight"].astype(np.float64) - original[f"{module}.weight"].astype(np.float64)
        s = np.linalg.svd(delta, compute_uv=False)
        optimal = np.sqrt(np.sum(s[k:] ** 2)) / np.linalg.norm(s)
        row = table.loc[module]
        assert row.k == k and row.source_kind == "full" and row.method == "randomized"
        assert optimal * (1 - 1e-9) <= row.rel_fro_error <= optimal * 1.05, (module, row.rel_fro_error, optimal)

    # the adapter is what the library call with the command's defaults writes (seed 0, 4 power iterations)
    from lab.squeeze.api import squeeze

    squeeze(source, tmp_path / "api", rank=k, base=base, results=tmp_path / "api-res")
    assert (tmp_path / "api" / "adapter_model.safetensors").read_bytes() == (tmp_path / "sq" / "adapter_model.safetensors").read_bytes()

    # Cont-Squeeze: one more step from the squeezed adapter, on the source run's texts, numbered after it
    continued = tmp_path / "sq-steps"
    assert is_complete(continued)
    record = json.loads((continued / CONFIG_FILE).read_text())
    assert record["options"]["init_adapter"] == str(tmp_path / "sq") and record["options"]["r"] == k
    assert record["options"]["texts"] == json.loads((minilm_full / CONFIG_FILE).read_text())["options"]["texts"]
    assert [json.loads(line)["step"] for line in (continued / LOSS_FILE).read_text().splitlines()] == [3]
