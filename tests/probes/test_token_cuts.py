"""Token cuts of attention matrices (issue 21 §1): the cross-block entropies of the packaged MiniLM (a
bidirectional encoder: two blocks) and of a tiny causal LLaMA (one block) against numpy's SVD of
transformers' own ``output_attentions``, the three laws over ℓ against numpy's least squares, Cardy's c
recovered from a synthetic profile, and "neither fits" on noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model

import builders
import lab
from builders import texts_file, word_tokenizer
from lab.probes.token_cuts import (NEITHER, chord_log, fit_token_laws, monotone_halves, token_cut_spectra,
                                   token_cuts)


def _block(P, block, ell):
    return P[ell:, :ell] if block == "reads_past" else P[:ell, ell:]


def _svd_numbers(C):
    """(entropy, Rényi-2, rank) of a block from numpy's SVD: p_i = σ_i²/Σσ²."""
    s = np.linalg.svd(C, compute_uv=False) ** 2
    p = s / s.sum()
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum()), float(-np.log((p * p).sum())), int((p > 1e-12).sum())


def _model_attention(model, ids):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_attentions=True)
    return np.stack([a[0].double().numpy() for a in out.attentions])


def _ols(x, y):
    """(a, slope, RSS) by numpy's polyfit."""
    slope, a = np.polyfit(x, y, 1)
    return a, slope, float(((y - a - slope * x) ** 2).sum())


# ---- pure functions ---------------------------------------------------------------------------------

def test_spectra_of_random_stacks_equal_numpy_svds_of_every_block():
    rng = np.random.default_rng(3)
    L = 20
    P = rng.dirichlet(np.full(L, 0.4), size=(2, L))
    t = token_cut_spectra(P)
    assert t.blocks == ("reads_past", "reads_future") and list(t.cuts) == list(range(1, L))
    for b, block in enumerate(t.blocks):
        for h in range(2):
            for j, ell in enumerate(t.cuts):
                C = _block(P[h], block, ell)
                S, R2, rank = _svd_numbers(C)
                assert t.entropy[b, h, j] == pytest.approx(S, abs=1e-10)
                assert t.renyi2[b, h, j] == pytest.approx(R2, abs=1e-10)
                assert t.rank[b, h, j] == rank
                assert t.mass[b, h, j] == pytest.approx(C.sum() / P[h].sum(), rel=1e-12)
    # the identity: zero cross blocks, undefined entropy; a uniform P: rank-one blocks, zero entropy
    eye = token_cut_spectra(np.eye(8)[None])
    assert np.isnan(eye.entropy).all() and (eye.rank == 0).all() and (eye.mass == 0).all()
    uniform = token_cut_spectra(np.full((1, 8, 8), 1 / 8))
    assert np.allclose(uniform.entropy, 0.0, atol=1e-12) and (uniform.rank == 1).all()


def test_cut_subsets_are_even_symmetric_and_bounded():
    assert list(token_cuts(16)) == list(range(1, 16))
    assert list(token_cuts(16, 40)) == list(range(1, 16))
    for L, n in ((64, 16), (256, 32), (128, 7)):
        cuts = token_cuts(L, n)
        assert len(cuts) <= n and cuts[0] == 1 and cuts[-1] == L - 1
        assert sorted(L - cuts) == sorted(cuts)  # symmetric under ℓ ↔ L − ℓ
        assert np.ptp(np.diff(cuts[: len(cuts) // 2])) <= 1  # evenly spaced, up to rounding


def test_cardy_fit_recovers_c_and_the_three_laws_equal_numpy_least_squares():
    rng = np.random.default_rng(0)
    L = 128
    ell = np.arange(1, L)
    x = np.log((L / np.pi) * np.sin(np.pi * ell / L))
    for c in (0.5, 1.0, 2.7):
        S = 0.3 + (c / 3) * x + rng.normal(0, 0.01, ell.size)
        laws = fit_token_laws(ell, L, S)
        assert laws.cardy.c == pytest.approx(c, abs=0.02)
        assert laws.verdict == "cardy" and laws.best == "cardy" and laws.margin > 2
        for fit, xs, k in ((laws.cardy, x, 2), (laws.volume, np.minimum(ell, L - ell), 2)):
            a, slope, rss = _ols(xs, S)
            assert (fit.a, fit.slope) == pytest.approx((a, slope), rel=1e-9)
            assert fit.r2 == pytest.approx(1 - rss / ((S - S.mean()) ** 2).sum(), rel=1e-9)
            assert fit.rse == pytest.approx(np.sqrt(rss / (S.size - k)), rel=1e-9)
            assert fit.aic == pytest.approx(S.size * np.log(rss / S.size) + 2 * (k + 1), rel=1e-9)
        rss = ((S - S.mean()) ** 2).sum()
        assert laws.constant.aic == pytest.approx(S.size * np.log(rss / S.size) + 4, rel=1e-9)
    assert chord_log(ell, L) == pytest.approx(x)
    volume = fit_token_laws(ell, L, 0.1 + 0.02 * np.minimum(ell, L - ell) + rng.normal(0, 0.01, ell.size))
    assert volume.verdict == "volume" and volume.volume.slope == pytest.approx(0.02, rel=0.05)
    flat = fit_token_laws(ell, L, 2.0 + rng.normal(0, 0.01, ell.size))
    assert flat.verdict == "constant" and flat.constant.a == pytest.approx(2.0, abs=0.01)
    assert monotone_halves(ell, L, x) == (True, True)
    assert monotone_halves(ell, L, -x) == (False, False)


def test_noise_and_two_poor_fits_give_neither_fits():
    rng = np.random.default_rng(1)
    L = 64
    ell = np.arange(1, L)
    for seed in range(5):
        noise = np.random.default_rng(seed).normal(1.0, 0.5, ell.size)
        laws = fit_token_laws(ell, L, noise)
        assert laws.verdict == NEITHER
        assert laws.cardy.r2 < 0.8 and laws.volume.r2 < 0.8
    # Cardy best by a wide margin, yet with R² < 0.8: still no verdict
    x = chord_log(ell, L)
    weak = 0.4 * x + rng.normal(0, 0.6, ell.size)
    laws = fit_token_laws(ell, L, weak)
    assert laws.best == "cardy" and laws.margin > 2 and laws.cardy.r2 < 0.8 and laws.verdict == NEITHER
    assert fit_token_laws(ell[:4], L, x[:4]).verdict is None  # too few cuts for a verdict


def test_the_two_law_fit_of_the_weights_profiles_draws_no_verdict_from_two_poor_fits():
    from lab.probes.attention import fit_laws

    ell = np.log(2.0) * np.array([1, 2, 3, 4, 5, 6, 5, 4, 3, 2, 1], dtype=float)
    for seed in range(5):
        volume, area, verdict = fit_laws(ell, np.random.default_rng(seed).normal(1.0, 0.3, ell.size))
        assert max(volume.r2, area.r2) < 0.8 and verdict == NEITHER
    # a clear winner with R² ≥ 0.8 keeps its name
    assert fit_laws(ell, 0.2 + 0.9 * np.log(ell) + np.random.default_rng(0).normal(0, 0.01, ell.size))[2] == "area_log"


# ---- on real models ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm_lora(tmp_path_factory):
    """The packaged MiniLM as base (eager attention) and a LoRA adapter on its query/value with random factors."""
    from transformers import AutoModel

    from lab.finetune.models import minilm_path

    root = tmp_path_factory.mktemp("minilm-token-cuts")
    model = AutoModel.from_pretrained(minilm_path(), attn_implementation="eager")
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
    builders.randomize_lora(peft, seed=11, std=0.05)
    peft.save_pretrained(root / "lora")
    return {"base": minilm_path(), "lora": root / "lora", "root": root}


def test_minilm_token_cut_tables_equal_numpy_svds_of_output_attentions(minilm_lora):
    from transformers import AutoModel

    from lab.engine.subjects import ModelSubject
    from lab.probes.windows import make_windows

    L = 24
    run = lab.analyze([minilm_lora["lora"]], base=minilm_lora["base"], out=minilm_lora["root"] / "results", run="r",
                      probes=["attention"], seq_len=[16, L], windows=2, progress=False)
    cuts, fits = run.table("attention_token_cuts"), run.table("attention_token_fits")
    summary = run.table("attention_summary")
    assert set(cuts["block"]) == {"reads_past", "reads_future"}  # a bidirectional encoder
    base = ModelSubject("base", None, minilm_lora["base"], "base")
    windows = [w for w in make_windows(base.tokenizer(), base.texts(), (16, L), 2) if w.seq_len == L]
    base_model = AutoModel.from_pretrained(minilm_lora["base"], attn_implementation="eager").eval()
    tuned = ModelSubject("lora", None, minilm_lora["lora"], "adapter", base=minilm_lora["base"]).load()
    means = {}
    for w in windows:
        P, B = _model_attention(tuned, list(w.ids)), _model_attention(base_model, list(w.ids))
        assert not np.allclose(P, B)  # the adapter moved the attention
        for layer, head in ((0, 0), (3, 7), (5, 11)):
            for block in ("reads_past", "reads_future"):
                got = cuts[(cuts.window == w.index) & (cuts.seq_len == L) & (cuts.layer == layer)
                           & (cuts["head"] == head) & (cuts.block == block)].sort_values("cut")
                assert list(got.cut) == list(range(1, L))
                want = np.array([_svd_numbers(_block(P[layer, head], block, ell)) for ell in range(1, L)])
                assert got.entropy.to_numpy() == pytest.approx(want[:, 0], abs=1e-6)
                assert got.renyi2.to_numpy() == pytest.approx(want[:, 1], abs=1e-6)
                base_want = [_svd_numbers(_block(B[layer, head], block, ell))[0] for ell in range(1, L)]
                assert got.base_entropy.to_numpy() == pytest.approx(base_want, abs=1e-6)
                mass = [_block(P[layer, head], block, ell).sum() / L for ell in range(1, L)]
                assert got.mass.to_numpy() == pytest.approx(mass, rel=1e-5)
                means.setdefault((layer, head, block), []).append(want[:, 0])
    ell = np.arange(1, L)
    x = np.log((L / np.pi) * np.sin(np.pi * ell / L))
    for (layer, head, block), profiles in means.items():
        row = fits[(fits.seq_len == L) & (fits.layer == layer) & (fits["head"] == head) & (fits.block == block)]
        assert len(row) == 1
        row = row.iloc[0]
        a, slope, _ = _ols(x, np.mean(profiles, axis=0))
        assert (row.cardy_a, row.cardy_c) == pytest.approx((a, 3 * slope), rel=1e-5, abs=1e-8)
        assert row.windows == 2 and row.cuts == L - 1
        if block == "reads_past":
            s = summary[(summary.seq_len == L) & (summary.layer == layer) & (summary["head"] == head)].iloc[0]
            assert s.token_cardy_c == pytest.approx(row.cardy_c) and s.token_verdict == row.verdict


def test_a_causal_llama_has_only_the_reads_past_block(tmp_path):
    base = builders.save(builders.tiny_llama(seed=0), tmp_path / "base")
    word_tokenizer(base)
    full = builders.save(builders.perturb(builders.tiny_llama(seed=0), seed=7, eps=5e-2), tmp_path / "full")
    texts, _ = texts_file(tmp_path / "texts.txt")
    run = lab.analyze([full], base=base, out=tmp_path / "results", run="r", probes=["attention"], texts=texts,
                      seq_len=[16], windows=2, progress=False, options={"attention": {"token_cuts": 9}})
    cuts = run.table("attention_token_cuts")
    assert set(cuts["block"]) == {"reads_past"}
    assert sorted(cuts.cut.unique()) == list(token_cuts(16, 9))
    assert set(run.table("attention_token_fits")["block"]) == {"reads_past"}
    from lab.engine.subjects import ModelSubject
    from lab.probes.windows import make_windows

    subject = ModelSubject("full", None, full, "full", base=base, corpus=texts)
    model = subject.load()
    for w in make_windows(subject.tokenizer(), subject.texts(), (16,), 2):
        P = _model_attention(model, list(w.ids))
        got = cuts[(cuts.window == w.index) & (cuts.layer == 1) & (cuts["head"] == 2)].sort_values("cut")
        want = [_svd_numbers(P[1, 2, ell:, :ell])[0] for ell in got.cut]
        assert got.entropy.to_numpy() == pytest.approx(want, abs=1e-6)
