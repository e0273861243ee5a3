"""The attention probe on real tiny models saved to disk (a LLaMA with a word-level tokenizer built
offline, a BERT with the packaged MiniLM's tokenizer): the windows as defined, attention rows that
are probability rows equal to the model's own output_attentions, entropies and no-hair numbers
recomputed with numpy SVDs, the base run once for several checkpoints, and the fits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.numpy import load_file

import builders
import lab
from lab.probes.attention import fit_laws, head_profiles, least_squares, run_attention, total_variation
from lab.probes.entanglement import entanglement_profile
from lab.probes.windows import make_windows

from builders import WORDS, texts_file, word_tokenizer  # noqa: F401  (the report's and thresholds' tests import them from here too)


@pytest.fixture(scope="module")
def llama_inputs(tmp_path_factory):
    """A tiny LLaMA base (GQA: 4 heads, 2 kv heads) with tokenizer, a LoRA adapter on q/v, a full fine-tune, texts."""
    root = tmp_path_factory.mktemp("attn")
    base = builders.save(builders.tiny_llama(seed=0), root / "base")
    word_tokenizer(base)
    model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    builders.randomize_lora(model, seed=5, std=0.2)
    model.save_pretrained(root / "lora")
    full = builders.save(builders.perturb(builders.tiny_llama(seed=0), seed=7, eps=5e-2), root / "full")
    texts, lines = texts_file(root / "texts.txt")
    return {"base": base, "lora": root / "lora", "full": full, "texts": texts, "lines": lines}


def _windows_by_hand(tok, lines, L, n):
    stream = []
    for i, line in enumerate(lines):
        if i:
            stream.append(tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id)
        stream += tok(line, add_special_tokens=False)["input_ids"]
    return [stream[w * L:(w + 1) * L] for w in range(n)]


def _model_attention(model, ids):
    """The model's own attention probabilities, (layers, heads, L, L) float64, from output_attentions."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_attentions=True)
    return np.stack([a[0].double().numpy() for a in out.attentions])


def _entropies(P):
    """Entropy at every cut of vec(P)/‖P‖ on the binary chain of an L×L matrix, L a power of two, by numpy SVDs."""
    psi = P.reshape(-1) / np.linalg.norm(P)
    n = int(np.log2(psi.size))
    out = []
    for k in range(1, n):
        s = np.linalg.svd(psi.reshape(2 ** k, -1), compute_uv=False) ** 2
        s = s[s > 0]
        out.append(float(-(s * np.log(s)).sum()))
    return np.array(out)


def test_uniform_attention_has_zero_entropy_and_the_identity_ln_L_at_the_row_column_cut():
    for L in (8, 12, 16):
        uniform = entanglement_profile(np.full((L, L), 1.0 / L))
        assert np.allclose(uniform.entropy, 0.0, atol=1e-10)
        identity = entanglement_profile(np.eye(L))
        assert identity.entropy[identity.sites.row_sites - 1] == pytest.approx(np.log(L), rel=1e-12)


def test_fits_recover_the_coefficients_of_synthetic_profiles():
    ell = np.log(2.0) * np.array([1, 2, 3, 4, 5, 4, 3, 2, 1], dtype=float)
    volume, area, better = fit_laws(ell, 0.3 + 0.7 * np.log(ell))
    assert (area.intercept, area.slope, area.r2) == pytest.approx((0.3, 0.7, 1.0), abs=1e-10)
    assert better == "area_log" and volume.r2 < 1.0
    volume, area, better = fit_laws(ell, -0.2 + 1.1 * ell)
    assert (volume.intercept, volume.slope, volume.r2) == pytest.approx((-0.2, 1.1, 1.0), abs=1e-10)
    assert better == "volume"
    assert np.isnan(least_squares(ell, np.zeros_like(ell)).r2)  # a constant profile: R² undefined, no winner
    assert fit_laws(ell, np.zeros_like(ell))[2] is None


def test_windows_are_exactly_the_defined_cut_of_the_joined_stream(tmp_path, llama_inputs):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llama_inputs["base"])
    windows = make_windows(tok, llama_inputs["lines"], (8, 16), 3)
    for L in (8, 16):
        mine = [list(w.ids) for w in windows if w.seq_len == L]
        assert mine == _windows_by_hand(tok, llama_inputs["lines"], L, 3)
        assert all(len(ids) == L for ids in mine)
    assert tok.eos_token_id in [i for w in windows for i in w.ids]  # texts joined by eos
    # BERT-style: no eos, joined by sep; the packaged MiniLM tokenizer
    from lab.finetune.models import minilm_path

    bert_tok = AutoTokenizer.from_pretrained(minilm_path())
    assert bert_tok.eos_token_id is None
    lines = ["The attention of every head.", "A second text, joined by the separator.", "And a third one here."]
    got = [list(w.ids) for w in make_windows(bert_tok, lines, (4,), 3)]
    assert got == _windows_by_hand(bert_tok, lines, 4, 3)
    assert bert_tok.sep_token_id in sum(got, []) and bert_tok.cls_token_id not in sum(got, [])
    with pytest.raises(lab.errors.InputError, match="windows of 16"):
        make_windows(tok, llama_inputs["lines"][:2], (16,), 5)


def test_hooked_attention_rows_are_the_models_probability_rows(llama_inputs):
    from lab.engine.subjects import ModelSubject

    subject = ModelSubject("base", None, llama_inputs["base"], "base", corpus=llama_inputs["texts"])
    model, tok = subject.load(), subject.tokenizer()
    windows = make_windows(tok, subject.texts(), (16,), 2)
    seen = {}
    run_attention(model, windows, lambda w, layer, P: seen.__setitem__((w.index, layer), P))
    for w in windows:
        ref = _model_attention(model, list(w.ids))
        for layer in range(ref.shape[0]):
            P = seen[(w.index, layer)]
            assert np.allclose(P.sum(axis=-1), 1.0, atol=1e-6)  # every row a probability distribution
            assert np.allclose(np.triu(P, 1), 0.0)  # causal: no attention to later tokens
            assert np.allclose(P, ref[layer], atol=1e-7)


def test_attention_tables_match_numpy_and_the_base_runs_once_for_several_checkpoints(tmp_path, llama_inputs):
    from lab.engine.subjects import ModelSubject
    from transformers import LlamaForCausalLM

    calls = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, a, o: calls.append(1) if isinstance(m, LlamaForCausalLM) else None)
    try:
        run = lab.analyze([llama_inputs["lora"], llama_inputs["full"]], base=llama_inputs["base"], out=tmp_path, run="r",
                          probes=["attention"], texts=llama_inputs["texts"], seq_len=[8, 16], windows=2, progress=False)
    finally:
        handle.remove()
    # forward passes: 2 lengths × 2 windows for the base (once) and for each of the 2 checkpoints
    assert len(calls) == 4 * 3
    assert run.manifest["options"]["probe_options"]["attention"]["seq_len"] == [8, 16]

    ent, summ = run.table("attention_entanglement"), run.table("attention_summary")
    base = ModelSubject("base", None, llama_inputs["base"], "base", corpus=llama_inputs["texts"])
    windows = make_windows(base.tokenizer(), base.texts(), (8, 16), 2)
    base_P = {(w.seq_len, w.index): _model_attention(base.load(), list(w.ids)) for w in windows}
    for name, fmt in (("lora", "adapter"), ("full", "full")):
        tuned = ModelSubject(name, None, llama_inputs[name], fmt, base=llama_inputs["base"]).load()
        rows = ent[ent.checkpoint == name]
        for w in windows:
            P = _model_attention(tuned, list(w.ids))
            for layer, head in ((0, 0), (1, 3)):
                got = rows[(rows.seq_len == w.seq_len) & (rows.window == w.index) & (rows.layer == layer)
                           & (rows["head"] == head)].sort_values("cut")
                assert got.entropy.to_numpy() == pytest.approx(_entropies(P[layer, head]), abs=1e-7)
                assert got.base_entropy.to_numpy() == pytest.approx(_entropies(base_P[(w.seq_len, w.index)][layer, head]),
                                                                    abs=1e-7)
        for L in (8, 16):
            for layer, head in ((0, 1), (1, 2)):
                Ps = [(_model_attention(tuned, list(w.ids)), base_P[(L, w.index)]) for w in windows if w.seq_len == L]
                tv = np.mean([0.5 * np.abs(t[layer, head] - b[layer, head]).sum(axis=-1).mean() for t, b in Ps])
                s_t = np.mean([_entropies(t[layer, head]) for t, _ in Ps], axis=0)
                s_b = np.mean([_entropies(b[layer, head]) for _, b in Ps], axis=0)
                row = summ[(summ.checkpoint == name) & (summ.seq_len == L) & (summ.layer == layer) & (summ["head"] == head)]
                assert len(row) == 1
                row = row.iloc[0]
                assert row.attention_tv == pytest.approx(tv, rel=1e-6) and row.attention_tv > 0
                ok = s_b > 0
                assert row.entropy_diff == pytest.approx(np.mean(np.abs(s_t - s_b)[ok] / s_b[ok]), rel=1e-6)
                # the summary's token-cut law is the reads_past block's (no law is fitted to the digit chain)
                fit = run.table("attention_token_fits")
                fit = fit[(fit.checkpoint == name) & (fit.seq_len == L) & (fit.layer == layer) & (fit["head"] == head)
                          & (fit.block == "reads_past")].iloc[0]
                assert row.token_cardy_c == pytest.approx(fit.cardy_c) and row.token_verdict == fit.verdict
    # inside: ‖ΔW_q‖_F / ‖W_q‖_F from the saved files (the full fine-tune) and from the adapter's factors
    w_base = load_file(str(llama_inputs["base"] / "model.safetensors"))
    w_full = load_file(str(llama_inputs["full"] / "model.safetensors"))
    adapter = load_file(str(llama_inputs["lora"] / "adapter_model.safetensors"))
    cfg = json.loads((llama_inputs["lora"] / "adapter_config.json").read_text())
    s = cfg["lora_alpha"] / cfg["r"]
    for layer in (0, 1):
        key = f"model.layers.{layer}.self_attn.q_proj.weight"
        wq = w_base[key].astype(np.float64)
        full_rel = np.linalg.norm(w_full[key] - w_base[key].astype(np.float64)) / np.linalg.norm(wq)
        pre = f"base_model.model.model.layers.{layer}.self_attn.q_proj"
        dq = s * adapter[f"{pre}.lora_B.weight"].astype(np.float64) @ adapter[f"{pre}.lora_A.weight"].astype(np.float64)
        for name, want in (("full", full_rel), ("lora", np.linalg.norm(dq) / np.linalg.norm(wq))):
            got = summ[(summ.checkpoint == name) & (summ.layer == layer)].q_rel_change
            assert got.to_numpy() == pytest.approx(np.full(len(got), want), rel=1e-5)
    windows_table = run.table("windows")
    assert sorted(windows_table.token_offset[windows_table.checkpoint == "lora"]) == [0, 0, 8, 16]


def test_total_variation_is_half_the_l1_distance_of_rows():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(5), size=3), rng.dirichlet(np.ones(5), size=3)
    assert total_variation(p, q) == pytest.approx([0.5 * sum(abs(a - b)) for a, b in zip(p, q)])
    assert total_variation(p, p) == pytest.approx(np.zeros(3))


@pytest.mark.parametrize("L", [7, 8, 12, 16])
def test_batched_head_profiles_equal_the_internal_probes_profile_of_each_head(L):
    P = np.random.default_rng(L).dirichlet(np.ones(L), size=(3, L))
    P[1] = np.tril(P[1])  # a causal-looking head
    batched = head_profiles(P)
    for h in range(3):
        one = entanglement_profile(P[h])
        assert batched.entropy[h] == pytest.approx(one.entropy, abs=1e-12)
        assert batched.renyi2[h] == pytest.approx(one.renyi2, abs=1e-12)
        assert batched.max_entropy == pytest.approx(one.max_entropy)
        assert batched.page_entropy == pytest.approx(one.page_entropy)
