"""esd, intruders and adapter_similarity through `lab.analyze` on real checkpoints on disk: a tiny LLaMA base, a
full fine-tune and two PEFT LoRA adapters. The stored rows equal the pure functions applied to the weights read
here with safetensors and PEFT's own merge (numpy), and every empty value is one the schema allows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

import builders
import lab
from fuzz.fuzz_helpers import check_empty_values
from lab.probes.adapter_similarity import update_cosine
from lab.probes.esd import esd_metrics
from lab.probes.intruders import intruder_sweep

MODULE = "model.layers.1.self_attn.q_proj"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("issue25")
    base = builders.save(builders.tiny_llama(seed=0), root / "base")
    full = builders.save(builders.perturb(builders.tiny_llama(seed=0), seed=3, eps=5e-2), root / "full")
    loras = []
    for i in range(2):
        model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
        builders.randomize_lora(model, seed=10 + i, std=0.3)
        model.save_pretrained(root / f"lora{i}")
        loras.append(root / f"lora{i}")
    return {"root": root, "base": base, "full": full, "lora0": loras[0], "lora1": loras[1]}


def _weight(folder, module=MODULE) -> np.ndarray:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))[f"{module}.weight"].astype(np.float64)


def _merged(adapter, module=MODULE) -> np.ndarray:
    """W + ΔW as PEFT merges it."""
    model = PeftModel.from_pretrained(builders.tiny_llama(seed=0), adapter).merge_and_unload()
    return dict(model.named_parameters())[f"{module}.weight"].detach().to(torch.float64).numpy()


def test_tables_equal_the_pure_functions(inputs, tmp_path):
    run = lab.analyze([inputs["full"], inputs["lora0"], inputs["lora1"]], base=inputs["base"], out=tmp_path, run="r",
                      probes=["esd", "intruders", "adapter_similarity"],
                      options={"intruders": {"ks": "2,8", "thresholds": "0.3,0.6,0.9"}}, progress=False)
    assert {"esd", "intruders", "intruder_vectors", "adapter_similarity", "subspace_similarity"} <= set(run.tables())
    check_empty_values(run)
    w = _weight(inputs["base"])
    tuned = {"full": _weight(inputs["full"]), "lora0": _merged(inputs["lora0"]), "lora1": _merged(inputs["lora1"])}

    esd = run.table("esd")
    for ckpt, wt in tuned.items():
        rows = esd[(esd.checkpoint == ckpt) & (esd.module == MODULE)].set_index("source")
        assert set(rows.index) == {"delta", "weight", "tuned"}
        for source, m in (("weight", w), ("tuned", wt), ("delta", wt - w)):
            ref = esd_metrics(m, seed=0)
            assert rows.loc[source, "alpha"] == pytest.approx(ref.fit.alpha, rel=1e-5), (ckpt, source)
            assert rows.loc[source, "xmin"] == pytest.approx(ref.fit.xmin, rel=1e-5), (ckpt, source)
            assert rows.loc[source, "log_norm"] == pytest.approx(ref.log_norm, rel=1e-6), (ckpt, source)

    counts = run.table("intruders")
    vectors = run.table("intruder_vectors")
    for ckpt, wt in tuned.items():
        sweep = intruder_sweep(w, wt - w, (2, 8))
        mine = vectors[(vectors.checkpoint == ckpt) & (vectors.module == MODULE)]
        for side in ("left", "right"):
            got = mine[mine.side == side].sort_values("index")
            np.testing.assert_allclose(got["max_cos"], sweep.side(side).max_cos, atol=1e-6)
            rows = counts[(counts.checkpoint == ckpt) & (counts.module == MODULE) & (counts.side == side)]
            assert len(rows) == 2 * 3
            for r in rows.itertuples():
                assert r.intruder_count == int((got["max_cos"].to_numpy()[: r.top_k] < r.threshold).sum())

    sim = run.table("adapter_similarity")
    pair = sim[(sim.module == MODULE) & (sim["first"] == "lora0") & (sim["second"] == "lora1")]
    assert len(pair) == 1
    expect = update_cosine(tuned["lora0"] - w, tuned["lora1"] - w)
    assert pair["cosine"].iloc[0] == pytest.approx(expect, rel=1e-5, abs=1e-7)
    assert len(sim[sim.module == MODULE]) == 3  # full:lora0, full:lora1, lora0:lora1
