"""The no-hair probe (pair scope) on real tiny models saved to disk: identical fine-tunes are at
distance 0, every outside distance equals a numpy computation from transformers' own
output_attentions and value projections, the inside distance equals one from quimb-checked
profiles of the saved weights, bootstrap intervals hold their point, and Dask gives the serial rows."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

import builders
import lab
from builders import texts_file, word_tokenizer
from lab.probes.attention import head_profiles
from lab.probes.entanglement import entanglement_profile
from lab.probes.no_hair import bootstrap_interval, cross_block_entropies
from lab.probes.token_cuts import token_cuts
from lab.probes.windows import make_windows

L_LENGTHS, N_WINDOWS = (8, 12), 3


@pytest.fixture(scope="module")
def pair_inputs(tmp_path_factory):
    """A tiny BERT base with tokenizer, a LoRA on query/value, a full fine-tune, a copy of the LoRA, texts."""
    root = tmp_path_factory.mktemp("nohair")
    base = builders.save(builders.tiny_bert(seed=0), root / "base")
    word_tokenizer(base)
    model = get_peft_model(builders.tiny_bert(seed=0), LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
    builders.randomize_lora(model, seed=5, std=0.2)
    model.save_pretrained(root / "lora")
    shutil.copytree(root / "lora", root / "lora-copy")
    full = builders.save(builders.perturb(builders.tiny_bert(seed=0), seed=7, eps=5e-2), root / "full")
    texts, lines = texts_file(root / "texts.txt", n=40)
    return {"root": root, "base": base, "lora": root / "lora", "copy": root / "lora-copy", "full": full, "texts": texts}


def _analyze(inputs, ckpts, out, run, options=None, **kw):
    options = {"no_hair": {"token_cuts": 0, **(options or {}).get("no_hair", {})}}  # every cut, as the reference
    return lab.analyze([inputs[c] for c in ckpts], base=inputs["base"], out=out, run=run, probes=["no_hair"],
                       texts=inputs["texts"], seq_len=L_LENGTHS, windows=N_WINDOWS, progress=False, options=options, **kw)


def _entropy(w):
    w = np.clip(w, 0, None)
    if w.sum() == 0:
        return np.nan
    p = w[w > 0] / w.sum()
    return float(-(p * np.log(p)).sum())


def _reference(model, ids):
    """Per layer: P (heads, L, L) from output_attentions, V per head from the value projection's weights applied
    to the layer's input (output_hidden_states), and Y = concat(P·V)·W_Oᵀ + b_O, all numpy float64."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_attentions=True, output_hidden_states=True)
    bert = model.base_model.model if isinstance(model, PeftModel) else model
    res = []
    for i, layer in enumerate(bert.encoder.layer):
        P = out.attentions[i][0].double().numpy()
        X = out.hidden_states[i][0].double().numpy()
        att = layer.attention
        v = att.self.value
        if hasattr(v, "lora_A"):  # PEFT's LoRA: W + s·B·A, from its own tensors
            W = v.base_layer.weight.detach().double().numpy() + v.scaling["default"] * (
                v.lora_B["default"].weight.detach().double().numpy() @ v.lora_A["default"].weight.detach().double().numpy())
            b = v.base_layer.bias.detach().double().numpy()
        else:
            W, b = v.weight.detach().double().numpy(), v.bias.detach().double().numpy()
        H = P.shape[0]
        V = (X @ W.T + b).reshape(len(ids), H, -1).transpose(1, 0, 2)
        O = P @ V
        Y = O.transpose(1, 0, 2).reshape(len(ids), -1) @ att.output.dense.weight.detach().double().numpy().T \
            + att.output.dense.bias.detach().double().numpy()
        res.append((P, V, O, Y))
    return res


def _load(path, base):
    from transformers import BertModel

    model = BertModel.from_pretrained(base, attn_implementation="eager")
    if (path / "adapter_config.json").is_file():
        model = PeftModel.from_pretrained(model, path)
    else:
        model = BertModel.from_pretrained(path, attn_implementation="eager")
    return model.eval()


def _qv(model):
    bert = model.base_model.model if isinstance(model, PeftModel) else model
    out = []
    for layer in bert.encoder.layer:
        ws = []
        for lin in (layer.attention.self.query, layer.attention.self.value):
            if hasattr(lin, "lora_A"):
                ws.append(lin.base_layer.weight.detach().double().numpy() + lin.scaling["default"] * (
                    lin.lora_B["default"].weight.detach().double().numpy() @ lin.lora_A["default"].weight.detach().double().numpy()))
            else:
                ws.append(lin.weight.detach().double().numpy())
        out.append(ws)
    return out


def test_identical_fine_tunes_are_at_distance_zero(tmp_path, pair_inputs):
    run = _analyze(pair_inputs, ["lora", "copy"], tmp_path, "same")
    t = run.table("no_hair")
    assert set(t["checkpoint"]) == {"lora:lora-copy"}
    assert set(t["measure"]) == {"token_cuts", "digit_chain", "rows", "head_outputs", "layer_output"}
    assert len(t) == 2 * 2 * 5  # layers × lengths × measures
    assert np.abs(t[["distance", "distance_lo", "distance_hi", "inside_q", "inside_v", "inside"]].to_numpy()).max() <= 1e-12
    assert (t["first_base"] > 0).all() and np.allclose(t["first_base"], t["second_base"], rtol=0, atol=1e-12)


def test_outside_and_inside_distances_equal_a_numpy_computation_from_transformers(tmp_path, pair_inputs):
    run = _analyze(pair_inputs, ["lora", "full"], tmp_path, "pair")
    t = run.table("no_hair").set_index(["seq_len", "layer", "measure"])
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(pair_inputs["base"])
    lines = pair_inputs["texts"].read_text().splitlines()
    models = {k: _load(pair_inputs[k], pair_inputs["base"]) for k in ("base", "lora", "full")}
    for L in L_LENGTHS:
        ws = [w for w in make_windows(tok, lines, L_LENGTHS, N_WINDOWS) if w.seq_len == L]
        per = {m: [] for m in ("token_cuts", "digit_chain", "rows", "head_outputs", "layer_output")}
        base_rows = []
        for w in ws:
            ref = {k: _reference(m, list(w.ids)) for k, m in models.items()}
            for layer in range(2):
                (P0, V0, O0, Y0), (Pa, Va, Oa, Ya), (Pb, Vb, Ob, Yb) = (ref[k][layer] for k in ("base", "lora", "full"))
                # token cuts by numpy SVD of each cross block
                cuts = {}
                for k, P in (("base", P0), ("a", Pa), ("b", Pb)):
                    cuts[k] = np.array([[[_entropy(np.linalg.svd(blk, compute_uv=False) ** 2)
                                          for blk in (P[h, ell:, :ell], P[h, :ell, ell:])] for ell in range(1, L)]
                                        for h in range(P.shape[0])])
                ok = cuts["base"] > 0
                tc = np.mean(np.abs(cuts["a"] - cuts["b"])[ok] / cuts["base"][ok])
                chains = {k: np.array([entanglement_profile(P[h]).entropy for h in range(P.shape[0])])
                          for k, P in (("base", P0), ("a", Pa), ("b", Pb))}
                okc = chains["base"] > 0
                dc = np.mean(np.abs(chains["a"] - chains["b"])[okc] / chains["base"][okc])
                rows = np.mean(0.5 * np.abs(Pa - Pb).sum(-1))
                ho = np.mean([np.linalg.norm(Oa[h] - Ob[h]) / np.linalg.norm(O0[h]) for h in range(O0.shape[0])])
                lo = np.linalg.norm(Ya - Yb) / np.linalg.norm(Y0)
                for m, v in zip(per, (tc, dc, rows, ho, lo)):
                    per[m].append((layer, v))
                base_rows.append((layer, np.mean(0.5 * np.abs(Pa - P0).sum(-1))))
        for m, vals in per.items():
            for layer in range(2):
                expect = np.mean([v for ly, v in vals if ly == layer])
                assert t.loc[(L, layer, m), "distance"] == pytest.approx(expect, rel=2e-5, abs=1e-9), (L, layer, m)
                lo_, hi_ = t.loc[(L, layer, m), ["distance_lo", "distance_hi"]]
                assert lo_ <= t.loc[(L, layer, m), "distance"] <= hi_
        for layer in range(2):
            expect = np.mean([v for ly, v in base_rows if ly == layer])
            assert t.loc[(L, layer, "rows"), "first_base"] == pytest.approx(expect, rel=2e-5)
    # inside: the ΔW profiles of the saved weights (entanglement_profile is itself tested against quimb)
    wb, wa, wf = (_qv(models[k]) for k in ("base", "lora", "full"))
    for layer in range(2):
        for j, role in enumerate(("q", "v")):
            pa, pb = entanglement_profile(wa[layer][j] - wb[layer][j]), entanglement_profile(wf[layer][j] - wb[layer][j])
            expect = np.mean(np.abs(pa.entropy - pb.entropy) / pa.page_entropy)
            got = t.loc[(L_LENGTHS[0], layer, "rows"), f"inside_{role}"]
            assert got == pytest.approx(expect, rel=1e-6)
        row = t.loc[(L_LENGTHS[0], layer, "layer_output")]
        assert row["ratio"] == pytest.approx(row["distance"] / row["inside"], rel=1e-12)
        dq, dv = wf[layer][0] - wb[layer][0], wf[layer][1] - wb[layer][1]
        size = np.sqrt(np.linalg.norm(dq) ** 2 + np.linalg.norm(dv) ** 2) / np.sqrt(
            np.linalg.norm(wb[layer][0]) ** 2 + np.linalg.norm(wb[layer][1]) ** 2)
        assert row["update_second"] == pytest.approx(size, rel=1e-5)


def test_cross_block_entropies_equal_numpy_svds_and_causal_upper_blocks_are_undefined():
    rng = np.random.default_rng(0)
    P = rng.random((3, 10, 10))
    P = P / P.sum(-1, keepdims=True)
    got = cross_block_entropies(P)  # (blocks, heads, cuts), every cut
    assert got.shape == (2, 3, 9)
    for h in range(3):
        for ell in range(1, 10):
            for b, blk in enumerate((P[h, ell:, :ell], P[h, :ell, ell:])):
                assert got[b, h, ell - 1] == pytest.approx(_entropy(np.linalg.svd(blk, compute_uv=False) ** 2), abs=1e-10)
    causal = np.tril(P)
    assert np.isnan(cross_block_entropies(causal)[1]).all()
    assert np.isfinite(cross_block_entropies(causal)[0]).all()
    some = cross_block_entropies(P, max_cuts=4)  # the token_cuts module's evenly spaced, symmetric cuts
    cuts = token_cuts(10, 4)
    assert np.array_equal(some, got[:, :, cuts - 1])
    # the digit chain of the same matrices is attention's head_profiles, tested there against numpy
    assert head_profiles(P).entropy.shape[0] == 3


@pytest.mark.parametrize("n", [1, 2, 5, 40])
def test_bootstrap_interval_holds_the_mean_and_narrows_with_more_windows(n):
    rng = np.random.default_rng(n)
    x = rng.gamma(2.0, size=n)
    lo, hi = bootstrap_interval(x, 2000, seed=3)
    assert lo <= x.mean() <= hi
    assert (lo, hi) == bootstrap_interval(x, 2000, seed=3)  # seeded
    if n == 1:
        assert lo == hi == x[0]
    if n == 40:  # the standard error's scale: about ±1.96·s/√n
        half = 1.96 * x.std(ddof=1) / np.sqrt(n)
        assert 0.6 * half < (hi - lo) / 2 < 1.4 * half


def test_pairs_option_selects_pairs_and_dask_equals_serial(tmp_path, pair_inputs):
    options = {"no_hair": {"pairs": ("lora:full", "lora-copy:full"), "cache_dir": str(tmp_path / "cache")}}
    serial = _analyze(pair_inputs, ["lora", "full", "copy"], tmp_path / "s", "three", options=options)
    t = serial.table("no_hair")
    assert sorted(set(t["checkpoint"])) == ["full:lora-copy", "lora:full"]
    dask = _analyze(pair_inputs, ["lora", "full", "copy"], tmp_path / "d", "three", options=options, workers=2)
    d = dask.table("no_hair")
    keys = ["checkpoint", "seq_len", "layer", "measure"]
    a, b = t.sort_values(keys).reset_index(drop=True), d.sort_values(keys).reset_index(drop=True)
    assert a.equals(b)


@pytest.mark.parametrize("pairs, says", [
    ("lora", ["FIRST:SECOND"]),  # malformed: not two names
    ("lora:fulll", ["'fulll'", "full"]),  # a misspelt name would select no pair and end with no no-hair rows
])
def test_a_bad_pairs_option_is_one_line_and_exit_2(tmp_path, pair_inputs, pairs, says):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "lab.cli", "analyze", str(pair_inputs["lora"]), str(pair_inputs["full"]), "--base",
           str(pair_inputs["base"]), "--probes", "no_hair", "--pairs", pairs, "--out", str(tmp_path), "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and all(s in lines[0] for s in says) and "Traceback" not in r.stderr
    assert not (tmp_path / "lora").exists() and not any(tmp_path.iterdir())  # nothing written
