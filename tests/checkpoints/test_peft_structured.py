"""The structured readers of AdaLoRA, VeRA, LoHa and IA3 (lab/checkpoints/peft_types/) take the place of
the general path: factors of the structural rank (AdaLoRA's kept ranks, VeRA's r, LoHa's r1·r2) or IA3's
dense W·diag(l − 1), equal to PEFT's own update (merge_and_unload − base, as in test_peft_general.py),
without materialising anything in PEFT; AdaLoRA's pruned ranks reach the deltas table; IA3 without a
base is a one-line error.

The adapters are test_peft_general.py's (made by PEFT on the tiny LLaMA/GPT-2 and randomised); the
expected ranks come from PEFT's loaded model and config, not from the readers.
"""

from __future__ import annotations

import numpy as np
import peft
import pytest
import torch
from peft import PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer

import builders
import lab
from lab.checkpoints import discover, iter_deltas, open_base, plan_reads
from lab.checkpoints import peft_general
from lab.checkpoints.peft_types.loha import khatri_rao
from lab.engine.plan import rank_bound as planned_rank_bound
from lab.errors import InputError
from lab.probes.inventory import delta_row
from peft_reference import expected_parts, rel_err
from test_peft_general import ADAPTERS, MODELS, _randomize, artifacts, peft_updates  # noqa: F401 (fixture)

FACTORED = ["adalora", "adalora_gpt2", "adalora_unmasked", "vera", "vera_unsaved", "vera_gpt2", "loha", "loha_bf16"]


@pytest.fixture(scope="module")
def adapters(artifacts, tmp_path_factory):  # noqa: F811
    """test_peft_general's adapters, plus an AdaLoRA saved mid-training (no rank_pattern, the pruned
    ranks still in the file with λ = 0: what RankAllocator's mask leaves before the final resize) and
    a LoHa whose r1·r2 = 36 is not below its modules' rank 32 (read dense)."""
    made = {}
    extra = {"adalora_unmasked": peft.AdaLoraConfig(init_r=4, target_r=2, total_step=10, target_modules=["q_proj", "v_proj"]),
             "loha_wide": peft.LoHaConfig(r=6, alpha=3, target_modules=["q_proj", "down_proj"]),
             "vera_wide": peft.VeraConfig(r=40, target_modules=["q_proj", "v_proj"], save_projection=True)}

    def get(name: str):
        if name not in extra:
            return artifacts(name)
        if name not in made:
            root = tmp_path_factory.mktemp(name)
            base = builders.save(builders.tiny_llama(seed=0), root / "base")
            torch.manual_seed(0)
            model = get_peft_model(builders.tiny_llama(seed=0), extra[name])
            _randomize(model)
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n.endswith("lora_E.default"):  # prune ranks 1, 2 (layer 0) or 1 (layer 1)
                        p[slice(1, 3) if "layers.0" in n else slice(1, 2)] = 0.0
            model.save_pretrained(root / "adapter")
            made[name] = (root / "adapter", base)
        return made[name]

    return get


def _arch(name: str) -> str:
    return "llama" if name == "adalora_unmasked" else ADAPTERS[name][0]


def _peft_layers(folder, arch: str) -> tuple[dict, object]:
    """PEFT's own tuner layers of the saved adapter (loaded onto the whole model) and its config."""
    model = PeftModel.from_pretrained(MODELS[arch](), folder)
    layers = {n: m for n, m in model.base_model.model.named_modules() if isinstance(m, BaseTunerLayer)}
    return layers, model.peft_config["default"]


def _structural_bound(name: str, layer, config) -> int:
    """The rank bound PEFT's layer implies: AdaLoRA its ranks with λ ≠ 0, VeRA r, LoHa r·r."""
    if "adalora" in name:
        return int((layer.lora_E["default"] != 0).sum())
    if "vera" in name:
        return int(config.r)
    return int(layer.r["default"]) ** 2


@pytest.fixture(autouse=True)
def no_peft_reads(monkeypatch):
    """A structured read never goes through PEFT's layers: the general path's materialisation fails."""
    def refuse(*args, **kwargs):
        raise AssertionError("the general path read a module")

    monkeypatch.setattr(peft_general, "materialised", refuse)


@pytest.mark.parametrize("name", FACTORED)
def test_factored_types_are_factors_of_the_structural_rank(adapters, name):
    folder, base = adapters(name)
    arch = _arch(name)
    layers, config = _peft_layers(folder, arch)
    want = peft_updates(folder, arch)
    deltas = {d.module: d for d in iter_deltas(discover(folder)[0], base)}
    assert set(deltas) == set(want)
    for module, d in deltas.items():
        assert d.factors is not None, f"{module}: {d.note}"
        layer = layers[module.rsplit(".", 1)[0] if module.endswith(("c_attn.q", "c_attn.k", "c_attn.v")) else module]
        bound = _structural_bound(name, layer, config)
        assert d.rank_bound == bound, (module, d.rank_bound, bound)
        assert rel_err(d.to_dense(), want[module]) < 1e-6, module
        assert np.linalg.matrix_rank(want[module]) <= bound
        assert d.base is not None and d.base.shape == d.shape
    for read in plan_reads(discover(folder)[0], open_base(base)):  # the plan's controls get the same rank
        for part in read.parts:
            rows = part.rows[1] - part.rows[0] if part.rows else read.shape[0]
            got = deltas[part.module].rank_bound
            if name == "adalora_unmasked":  # the plan sees the stored ranks, not which λ are 0
                assert planned_rank_bound(read, rows) == 4 >= got
            else:
                assert planned_rank_bound(read, rows) == got, part.module


def test_loha_bound_is_reached_and_adalora_counts_its_pruned_ranks(adapters):
    """LoHa's r1·r2 is the rank of a randomised update (the bound is the rank, not just a ceiling), and
    AdaLoRA's pruned ranks are init_r − kept, in the Delta and the note."""
    folder, base = adapters("loha")
    for module, d in ((d.module, d) for d in iter_deltas(discover(folder)[0], base)):
        assert np.linalg.matrix_rank(d.to_dense()) == d.rank_bound == 4, module  # r = 2: r1·r2 = 4
        assert d.pruned_ranks is None
    for name in ("adalora", "adalora_unmasked"):
        folder, base = adapters(name)
        layers, config = _peft_layers(folder, "llama")
        for d in iter_deltas(discover(folder)[0], base):
            kept = int((layers[d.module].lora_E["default"] != 0).sum())
            assert d.pruned_ranks == config.init_r - kept > 0, d.module
            assert d.note == f"adalora: {kept} of {config.init_r} ranks kept"


@pytest.mark.parametrize("name", ["loha_wide", "vera_wide"])
def test_rank_beyond_the_shape_is_dense(adapters, name):
    """LoHa's r1·r2 = 36 or VeRA's r = 40 ≥ min(rows, cols) = 32 (``lab finetune --budget`` picks VeRA
    r = 5760 on MiniLM's 384² modules): factors would be no smaller than ΔW, so ΔW is dense (still
    PEFT's, still without PEFT at read time) and the bound, the plan's too, is the shape's."""
    folder, base = adapters(name)
    want = peft_updates(folder, "llama")
    reads = {r.module: r for r in plan_reads(discover(folder)[0], open_base(base))}
    deltas = list(iter_deltas(discover(folder)[0], base))
    assert {d.module for d in deltas} == set(want)
    for d in deltas:
        assert d.dense is not None and d.note.startswith(f"{name.split('_')[0]}: dense"), d.module
        assert d.rank_bound == min(d.shape) == planned_rank_bound(reads[d.module], d.shape[0])
        assert rel_err(d.dense, want[d.module]) < 1e-6, d.module


def test_khatri_rao_is_the_hadamard_product():
    g = np.random.default_rng(0)
    w1a, w1b, w2a, w2b = g.normal(size=(6, 2)), g.normal(size=(2, 5)), g.normal(size=(6, 3)), g.normal(size=(3, 5))
    B, A = khatri_rao(w1a, w1b, w2a, w2b)
    assert B.shape == (6, 6) and A.shape == (6, 5)
    np.testing.assert_allclose(B @ A, (w1a @ w1b) * (w2a @ w2b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["ia3", "ia3_gpt2", "ia3_bin"])
def test_ia3_is_the_base_scaled_without_peft(adapters, name):
    folder, base = adapters(name)
    want = peft_updates(folder, ADAPTERS[name][0])
    deltas = {d.module: d for d in iter_deltas(discover(folder)[0], base)}
    assert set(deltas) == set(want)
    for module, d in deltas.items():
        assert d.dense is not None and d.note.startswith("ia3: ΔW = W scaled"), d.note
        assert d.rank_bound == min(d.shape) and d.pruned_ranks is None
        assert rel_err(d.dense, want[module]) < 1e-6, module


def test_analyze_writes_pruned_ranks(tmp_path, adapters):
    """lab analyze on the masked AdaLoRA: pruned_ranks = init_r − kept and rank_bound = kept per module
    (kept from PEFT's loaded layers); pruned_ranks is empty for another kind."""
    folder, base = adapters("adalora")
    layers, config = _peft_layers(folder, "llama")
    run = lab.analyze(folder, base=base, out=tmp_path / "res", run="r", probes=["deltas"], progress=False)
    table = run.table("deltas").set_index("module")
    assert set(table.index) == set(layers)
    assert str(table.pruned_ranks.dtype).lower().startswith("int64")
    for module, layer in layers.items():
        kept = int((layer.lora_E["default"] != 0).sum())
        assert (table.loc[module, "pruned_ranks"], table.loc[module, "rank_bound"]) == (config.init_r - kept, kept)
        assert table.loc[module, "factored"]
    folder, base = adapters("vera")
    rows = [delta_row(d) for d in iter_deltas(discover(folder)[0], base)]
    assert rows and all(r["pruned_ranks"] is None and r["kind"] == "vera" for r in rows)


def test_ia3_without_a_base_is_a_one_line_error(adapters):
    from typer.testing import CliRunner

    from lab.cli import app

    folder, _ = adapters("ia3")
    with pytest.raises(InputError, match=r"this IA3 adapter .* pass --base BASE") as e:
        list(iter_deltas(discover(folder)[0]))
    assert "\n" not in str(e.value) and str(folder / "adapter_config.json") in str(e.value)
    result = CliRunner().invoke(app, ["analyze", str(folder), "--out", str(folder.parent / "res-no-base")])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pass --base BASE" in lines[0], result.stderr


@pytest.mark.parametrize("name", ["adalora", "vera", "loha"])
def test_a_streamed_base_gives_the_in_memory_rows(tmp_path, adapters, name):
    """Factored types stream a large base weight from its file, as LoRA does (stream_bytes = 0 streams
    every one): the spectra (alignment with W, intruders) and entanglement rows equal the in-memory run's."""
    import pandas as pd

    from lab.checkpoints.ranges import TensorRanges

    folder, base = adapters(name)
    reads = plan_reads(discover(folder)[0], open_base(base))
    from lab.checkpoints import read_module
    from lab.checkpoints.loader import TensorLoader

    with TensorLoader() as loader:
        streamed = [d for r in reads for d in read_module(r, loader, stream_bytes=0)]
    assert streamed and all(isinstance(d.base, TensorRanges) for d in streamed if d.is_factored)
    tables = {}
    for label, stream in (("memory", None), ("streamed", 0)):
        run = lab.analyze(folder, base=base, out=tmp_path / label, run="r", probes=["entanglement", "spectra"],
                          stream_bytes=stream, progress=False)
        tables[label] = {t: run.table(t).sort_values(["module", "source"] + (["cut"] if "cut" in run.table(t) else []))
                         .reset_index(drop=True) for t in ("spectra", "entanglement")}
    for t in ("spectra", "entanglement"):
        a, b = tables["memory"][t], tables["streamed"][t]
        numeric = [c for c in a.columns if pd.api.types.is_float_dtype(a[c])]
        assert a.drop(columns=numeric).equals(b.drop(columns=numeric)), t
        np.testing.assert_allclose(a[numeric].to_numpy(float), b[numeric].to_numpy(float), rtol=1e-7, atol=1e-9, err_msg=t)
