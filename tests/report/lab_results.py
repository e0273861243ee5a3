"""Real results folders for the report and dashboard tests, made by ``lab.analyze`` on real tiny
checkpoints, with the reference updates (PEFT's ``get_delta_weight``, torch differences) kept
for independent comparisons.

* ``results``: three runs. ``lora-r4`` is a training output (checkpoint-10/, checkpoint-20/) of PEFT
  LoRA adapters (r = 4) on q/v/down of a tiny LLaMA (with a word-level tokenizer), with random
  controls and every probe family (attention and thresholds on texts, msu, msu_pairs over its two
  checkpoints); the second is a full fine-tune whose run and checkpoint names carry HTML markup, to
  test escaping, with the weight probes and the attention and thresholds probes but no controls
  and no msu tables; ``merges`` holds the ``merge`` table of ``lab merge`` (stack, linear, svd, lego)
  of the two checkpoints.
* ``partial``: one run with only the deltas table (every other family "not computed").
* ``empty``: a folder without runs.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file

import builders
import lab

sys.path.insert(0, str(Path(__file__).parents[1] / "probes"))  # the probes' tests build the tokenizer and texts
from test_probes_attention import texts_file, word_tokenizer  # noqa: E402

LORA_RUN = "lora-r4"
MARKUP_RUN = "full <img src=x onerror=alert(1)>"
MARKUP_CHECKPOINT = "tuned<script>alert(2)"
PARTIAL_RUN = "deltas-only"
MERGE_RUN = "merges"
MERGE_METHODS = ("stack", "linear", "svd", "lego")
MERGE_RANK = 2
SEQ_LEN = (8, 16)
WINDOWS = 2
LORA_PROBES = ["entanglement", "spectra", "attention", "thresholds", "msu", "msu_pairs", "no_hair", "esd", "intruders",
               "adapter_similarity", "forgetting"]  # no_hair, adapter_similarity: its two checkpoints
FULL_PROBES = ["entanglement", "spectra", "attention", "thresholds", "esd", "intruders", "forgetting"]
STEPS = (10, 20)
RANK = 4
FULL_MODULES = r"self_attn\.(q|v)_proj"  # fewer modules: fewer charts to draw, a faster test


@dataclass
class Results:
    results: Path
    partial: Path
    empty: Path
    base: Path
    lora_deltas: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (checkpoint, module) -> ΔW
    full_deltas: dict[str, np.ndarray] = field(default_factory=dict)  # module -> ΔW
    checkpoint_files: dict[str, list[Path]] = field(default_factory=dict)  # checkpoint -> its weight files


def build(root: Path) -> Results:
    """Build the checkpoints and analyze them with lab (a few seconds on 2 cores)."""
    root = Path(root)
    base = builders.save(builders.tiny_llama(seed=0), root / "base")
    word_tokenizer(base)
    texts, _ = texts_file(root / "texts.txt", n=16, seed=3)
    reference, _ = texts_file(root / "reference.txt", n=16, seed=4)  # the forgetting probe's other text set
    out = Results(results=root / "results", partial=root / "partial", empty=root / "empty", base=base)
    out.empty.mkdir()

    training = root / "training"
    for step in STEPS:
        model = get_peft_model(builders.tiny_llama(seed=0),
                               LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=["q_proj", "v_proj", "down_proj"]))
        builders.randomize_lora(model, seed=step)
        folder = training / f"checkpoint-{step}"
        model.save_pretrained(folder)
        out.checkpoint_files[folder.name] = sorted(folder.glob("*.safetensors"))
        for name, module in model.named_modules():
            if hasattr(module, "get_delta_weight") and "default" in getattr(module, "lora_A", {}):
                out.lora_deltas[(folder.name, name.removeprefix("base_model.model."))] = peft_delta(module)

    tuned = builders.save(builders.perturb(builders.tiny_llama(seed=0), seed=5), root / MARKUP_CHECKPOINT)
    out.checkpoint_files[MARKUP_CHECKPOINT] = [tuned / "model.safetensors"]
    wb, wf = load_file(base / "model.safetensors"), load_file(tuned / "model.safetensors")
    out.full_deltas = {k.removesuffix(".weight"): (wf[k].double() - wb[k].double()).numpy()
                       for k, v in wb.items() if v.ndim == 2 and re.search(FULL_MODULES, k)}

    shared = dict(texts=texts, seq_len=list(SEQ_LEN), windows=WINDOWS, progress=False,
                  options={"forgetting": {"reference_texts": str(reference), "bootstrap": 200}})
    lab.analyze(training, base=base, out=out.results, run=LORA_RUN, controls=True, probes=LORA_PROBES, **shared)
    lab.analyze(tuned, base=base, out=out.results, run=MARKUP_RUN, modules=FULL_MODULES, probes=FULL_PROBES, **shared)
    merge(training, out.results)
    lab.analyze(training / "checkpoint-20", base=base, out=out.partial, run=PARTIAL_RUN, probes=["deltas"], progress=False)
    return out


def merge(training: Path, results: Path) -> None:
    """``lab merge`` of the two checkpoints with every method into ``results/merges`` (the CLI in-process)."""
    from typer.testing import CliRunner

    from lab.cli import app

    for method in MERGE_METHODS:
        args = ["merge", str(training / "checkpoint-10"), str(training / "checkpoint-20"), "--method", method,
                "--out", str(training.parent / "merged" / method), "--results", str(results), "--run", MERGE_RUN]
        if method in ("svd", "lego"):
            args += ["--rank", str(MERGE_RANK)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output


def peft_delta(module) -> np.ndarray:
    """ΔW of a PEFT LoRA layer in float64: PEFT's own factors and scaling, multiplied in float64 (PEFT's
    get_delta_weight multiplies in float32, whose round-off would blur comparisons at 1e-9)."""
    with torch.no_grad():
        b = module.lora_B["default"].weight.double()
        a = module.lora_A["default"].weight.double()
        delta = (b @ a * module.scaling["default"]).numpy()
        reference = module.get_delta_weight("default").double().numpy()
    assert np.allclose(delta, reference, rtol=1e-5, atol=1e-7), "PEFT's scaling is not what this helper assumes"
    return delta


def shannon_entropy(p: np.ndarray) -> float:
    """−Σ p ln p in nats over the non-zero p: the tests' one reference, written here rather than taken
    from ``lab.probes.entanglement.entropies`` so that it checks that helper instead of repeating it."""
    p = np.asarray(p, dtype=np.float64)
    p = p[p > 1e-300]
    return float(-(p * np.log(p)).sum())


def entropy_of_squared_singular_values(matrix: np.ndarray) -> float:
    """−Σ p ln p with p = σ²/Σσ²: the entanglement entropy at the row|column cut, from numpy's SVD."""
    s = np.linalg.svd(matrix, compute_uv=False)
    return shannon_entropy(s**2 / np.sum(s**2))
