"""The one table of formats (lab/checkpoints/formats.py): every structured PEFT reader has its row, every
read a plan makes names the row that planned it and reads back to PEFT's own update, and no format's
module reaches the table (it imports them, they never import it)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from peft import LoraConfig, LoHaConfig, get_peft_model

import builders
import test_layout
from lab.checkpoints import TensorLoader, discover, open_base, plan_reads, read_module
from lab.checkpoints import peft_types
from lab.checkpoints.formats import FORMATS, format_key


def test_every_structured_reader_module_has_its_row_and_only_those():
    readers = {p.stem for p in Path(peft_types.__file__).parent.glob("*.py")} - {"__init__", "common"}
    assert {f"peft:{name}" for name in readers} == {key for key in FORMATS if key.startswith("peft:")}
    for key, fmt in FORMATS.items():
        assert fmt.otherwise is None or (fmt.otherwise in FORMATS and FORMATS[fmt.otherwise].otherwise is None), key


def test_no_module_of_the_readers_imports_the_table():
    importers = sorted(m for m, targets in test_layout.GRAPH.items()
                       if "lab.checkpoints.formats" in targets and m.startswith("lab.checkpoints."))
    assert importers == []
    assert not test_layout.reachable("lab.checkpoints.formats") & {"lab.checkpoints.formats", "lab.checkpoints"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny LLaMA base, a perturbed full fine-tune of it, and LoRA and LoHa adapters on it (PEFT's own)."""
    root = tmp_path_factory.mktemp("formats")
    base = builders.save(builders.tiny_llama(0), root / "base")
    full = builders.save(builders.perturb(builders.tiny_llama(0)), root / "full")
    out = {"base": base, "full": full}
    for name, config in (("lora", LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])),
                         ("loha", LoHaConfig(r=2, alpha=4, target_modules=["q_proj", "v_proj"]))):
        model = get_peft_model(builders.tiny_llama(0), config)
        torch.manual_seed(3)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if p.requires_grad:
                    p.normal_(0, 0.1)
        model.save_pretrained(root / name)
        merged = model.merge_and_unload()
        out[f"{name}_merged"] = {k: v.double().numpy() for k, v in merged.state_dict().items()}
        out[name] = root / name
    return out


@pytest.mark.parametrize("name, key", [("full", "full"), ("lora", "adapter"), ("loha", "peft:loha")])
def test_each_read_names_the_row_that_planned_it_and_reads_back_to_the_update(checkpoints, name, key):
    ckpt = discover(checkpoints[name])[0]
    base = open_base(checkpoints["base"])
    assert format_key(ckpt) == key
    reads = plan_reads(ckpt, base)
    assert reads and {r.format for r in reads} == {key}
    W0 = {k: v.double().numpy() for k, v in builders.tiny_llama(0).state_dict().items()}
    W1 = ({k: v.double().numpy() for k, v in builders.perturb(builders.tiny_llama(0)).state_dict().items()}
          if name == "full" else checkpoints[f"{name}_merged"])
    with TensorLoader() as loader:
        for spec in reads[:6]:
            (delta,) = read_module(spec, loader)
            want = W1[f"{spec.module}.weight"] - W0[f"{spec.module}.weight"]
            np.testing.assert_allclose(delta.to_dense(), want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
