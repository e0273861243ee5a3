"""The thresholds probe against numpy computations from the saved files: a tiny LLaMA with GQA and
RoPE (base and a LoRA adapter on q, k, v): both scales of gamma, the causal logit_max after RoPE
written here in numpy from the config's rope_theta, the extreme-value control; a tiny BERT with
biases and the MiniLM tokenizer (bidirectional: every pair attended); the hooked projection input
times Wᵀ + b is the projection's output; the growth fits (R² NaN for two lengths); --seq-len and
--windows through the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.numpy import load_file
from typer.testing import CliRunner

import builders
import lab
from lab.engine.subjects import ModelSubject
from lab.probes.thresholds import growth_rows
from lab.probes.windows import make_windows
from test_probes_attention import texts_file, word_tokenizer


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("thr")
    base = builders.save(builders.tiny_llama(seed=0), root / "base")
    word_tokenizer(base)
    model = get_peft_model(builders.tiny_llama(seed=0),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj"]))
    builders.randomize_lora(model, seed=9, std=0.3)
    model.save_pretrained(root / "lora")
    texts, _ = texts_file(root / "texts.txt", n=16, seed=1)
    return {"root": root, "base": base, "lora": root / "lora", "texts": texts}


def _rope(x, theta):
    """RoPE of (positions, heads, d) in numpy, the half-split convention (rotate_half) LLaMA uses."""
    L, _, d = x.shape
    inv = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.arange(L, dtype=np.float64)[:, None] * inv[None]
    cos, sin = np.cos(np.concatenate([ang, ang], -1))[:, None], np.sin(np.concatenate([ang, ang], -1))[:, None]
    rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * cos + rot * sin


def _expected(inputs, adapter: bool, windows):
    """gamma rows by hand: hidden states from the model, RMSNorm, W_Q/W_K (+ s·B·A) from the files, RoPE in numpy."""
    cfg = json.loads((inputs["base"] / "config.json").read_text())
    heads, kv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta", 10000.0))
    w = load_file(str(inputs["base"] / "model.safetensors"))
    subject = (ModelSubject("lora", None, inputs["lora"], "adapter", base=inputs["base"]) if adapter
               else ModelSubject("base", None, inputs["base"], "base"))
    model = subject.load()
    if adapter:
        ad = load_file(str(inputs["lora"] / "adapter_model.safetensors"))
        acfg = json.loads((inputs["lora"] / "adapter_config.json").read_text())
        s = acfg["lora_alpha"] / acfg["r"]
    out = {}
    for win in windows:
        with torch.no_grad():
            hidden = model(input_ids=torch.tensor([win.ids]), output_hidden_states=True).hidden_states
        for layer in range(cfg["num_hidden_layers"]):
            h = hidden[layer][0].double().numpy()
            norm = w[f"model.layers.{layer}.input_layernorm.weight"].astype(np.float64)
            X = h / np.sqrt((h * h).mean(-1, keepdims=True) + cfg["rms_norm_eps"]) * norm
            proj, lora = {}, {}
            for r in ("q", "k"):
                W = w[f"model.layers.{layer}.self_attn.{r}_proj.weight"].astype(np.float64)
                proj[r] = X @ W.T
                if adapter:
                    pre = f"base_model.model.model.layers.{layer}.self_attn.{r}_proj"
                    lora[r] = s * X @ ad[f"{pre}.lora_A.weight"].astype(np.float64).T @ ad[f"{pre}.lora_B.weight"].astype(np.float64).T
                    proj[r] = proj[r] + lora[r]
            q = proj["q"].reshape(len(win.ids), heads, d)
            k = proj["k"].reshape(len(win.ids), kv, d)
            qr, kr = _rope(q, theta), _rope(k, theta)
            L = len(win.ids)
            for head in range(heads):
                g = head // (heads // kv)
                # every attended pair (j ≤ i) written out, not the probe's vectorized mask
                logit = max(abs(qr[i, head] @ kr[j, g]) for i in range(L) for j in range(i + 1)) / math.sqrt(d)
                row = {"gamma_q": np.abs(q[:, head]).max() * d ** -0.25, "gamma_k": np.abs(k[:, g]).max() * d ** -0.25,
                       "gamma_q_as": np.abs(q[:, head]).max() * d ** 0.25, "gamma_k_as": np.abs(k[:, g]).max() * d ** 0.25,
                       "gamma_q_rope": np.abs(qr[:, head]).max() * d ** -0.25,
                       "gamma_k_rope": np.abs(kr[:, g]).max() * d ** -0.25, "logit_max": logit,
                       "evt_q": np.std(q[:, head]) * d ** -0.25 * math.sqrt(2 * math.log(L * d)),
                       "evt_k": np.std(k[:, g]) * d ** -0.25 * math.sqrt(2 * math.log(L * d))}
                if adapter:
                    row["gamma_lora"] = np.abs(lora["q"].reshape(-1, heads, d)[:, head]).max() * d ** -0.25
                    row["gamma_lora_k"] = np.abs(lora["k"].reshape(-1, kv, d)[:, g]).max() * d ** -0.25
                out[(win.seq_len, win.index, layer, head)] = row
    return out


def test_gamma_on_a_tiny_llama_equals_numpy_from_the_saved_weights_with_and_without_an_adapter(tmp_path, inputs):
    run = lab.analyze([inputs["lora"], inputs["base"]], base=inputs["base"], out=tmp_path, run="r", probes=["thresholds"],
                      texts=inputs["texts"], seq_len=[8, 16], windows=2, progress=False)
    table = run.table("thresholds")
    windows = make_windows(ModelSubject("b", None, inputs["base"], "base").tokenizer(),
                           ModelSubject("b", None, inputs["base"], "base", corpus=inputs["texts"]).texts(), (8, 16), 2)
    for name, adapter in (("lora", True), ("base", False)):
        want = _expected(inputs, adapter, windows)
        rows = table[table.checkpoint == name]
        assert len(rows) == len(want) == 2 * 2 * 2 * 4
        for r in rows.itertuples():
            exp = want[(r.seq_len, r.window, r.layer, r.head)]
            for col, value in exp.items():
                assert getattr(r, col) == pytest.approx(value, rel=1e-5), col
            assert r.kv_head == r.head // 2
            assert r.threshold == pytest.approx(math.sqrt(math.log(r.seq_len)))
            assert r.ratio == pytest.approx(max(exp["gamma_q"], exp["gamma_k"]) / math.sqrt(math.log(r.seq_len)))
            assert r.ratio_as == pytest.approx(max(exp["gamma_q_as"], exp["gamma_k_as"]) / math.sqrt(math.log(r.seq_len)))
            assert r.ln_L == pytest.approx(math.log(r.seq_len))
            assert r.evt_ratio_q == pytest.approx(exp["gamma_q"] / exp["evt_q"], rel=1e-5)
            assert r.evt_ratio_k == pytest.approx(exp["gamma_k"] / exp["evt_k"], rel=1e-5)
        if not adapter:
            assert rows.gamma_lora.isna().all() and rows.gamma_lora_k.isna().all()
    growth = run.table("threshold_growth")
    assert len(growth) == 2 * 2 and (growth.lengths == 2).all()
    for g in growth.itertuples():
        rows = table[(table.checkpoint == g.checkpoint) & (table.layer == g.layer)]
        for cols, slope, x in ((["gamma_q", "gamma_k"], g.slope, np.sqrt), (["evt_q", "evt_k"], g.evt_slope, np.sqrt),
                               (["logit_max"], g.logit_slope, lambda v: v)):
            peak = [rows[rows.seq_len == L][cols].to_numpy().max() for L in (8, 16)]
            assert slope == pytest.approx((peak[1] - peak[0]) / (x(math.log(16)) - x(math.log(8))), rel=1e-9), cols
        # two lengths: a line fits them by construction, so no R² is reported
        assert math.isnan(g.r2) and math.isnan(g.evt_r2) and math.isnan(g.logit_r2)


def test_hooked_input_times_w_plus_bias_is_the_projection_output_of_a_lora_bert(tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertModel

    from lab.finetune.models import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    base = BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                num_attention_heads=4, max_position_embeddings=64))
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    peft = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value"]))
    builders.randomize_lora(peft, seed=4, std=0.3)
    peft.save_pretrained(tmp_path / "lora")
    model = ModelSubject("lora", None, tmp_path / "lora", "adapter", base=tmp_path / "base").load()
    seen = {}
    query = model.base_model.model.encoder.layer[1].attention.self.query
    handle = query.register_forward_hook(lambda m, a, o: seen.update(x=a[0][0].double().numpy(), y=o[0].double().numpy()))
    ids = tok("the heads attend to every token of this short text", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        model(input_ids=torch.tensor([ids]))
    handle.remove()
    w = load_file(str(tmp_path / "base" / "model.safetensors"))
    ad = load_file(str(tmp_path / "lora" / "adapter_model.safetensors"))
    pre = "base_model.model.encoder.layer.1.attention.self.query"
    key = "encoder.layer.1.attention.self.query"
    W = w[f"{key}.weight"].astype(np.float64) + 2.0 * ad[f"{pre}.lora_B.weight"].astype(np.float64) @ ad[f"{pre}.lora_A.weight"].astype(np.float64)
    b = w[f"{key}.bias"].astype(np.float64)
    assert seen["x"] @ W.T + b == pytest.approx(seen["y"], abs=1e-5)
    # and the probe's gamma_q of that layer is the max of that output per head, scaled by d_head^(-1/4)
    texts = tmp_path / "t.txt"
    texts.write_text("the heads attend to every token of this short text\nand a second line of words\n")
    run = lab.analyze(tmp_path / "lora", base=tmp_path / "base", out=tmp_path / "out", run="r", probes=["thresholds"],
                      texts=texts, seq_len=[len(ids)], windows=1, progress=False)
    rows = run.table("thresholds")
    rows = rows[rows.layer == 1].sort_values("head")
    want = np.abs(seen["y"].reshape(len(ids), 4, 8)).max(axis=(0, 2)) * 8 ** -0.25
    assert rows.gamma_q.to_numpy() == pytest.approx(want, rel=1e-5)
    assert rows.gamma_q_as.to_numpy() == pytest.approx(want * math.sqrt(8), rel=1e-5)
    assert rows.gamma_q_rope.isna().all()  # BERT has absolute positions, no rotary variant
    # a bidirectional encoder attends to every pair: logit_max over the whole L×L block, from the saved key weights
    Wk = w["encoder.layer.1.attention.self.key.weight"].astype(np.float64)
    assert f"{pre.replace('query', 'key')}.lora_A.weight" not in ad  # the adapter is on query and value only
    k = (seen["x"] @ Wk.T + w["encoder.layer.1.attention.self.key.bias"].astype(np.float64)).reshape(len(ids), 4, 8)
    q = seen["y"].reshape(len(ids), 4, 8)
    logits = np.abs(np.einsum("ihd,jhd->hij", q, k)).max(axis=(1, 2)) / math.sqrt(8)
    assert rows.logit_max.to_numpy() == pytest.approx(logits, rel=1e-5)


def test_growth_fits_recover_synthetic_slopes_and_report_no_r2_for_two_lengths():
    def rows(lengths):
        return [{"layer": 0, "seq_len": L, "gamma_q": 0.5 + 1.7 * math.sqrt(math.log(L)) - 0.1 * h, "gamma_k": 0.0,
                 "evt_q": 0.2 + 0.3 * math.sqrt(math.log(L)) - 0.01 * h, "evt_k": 0.1,
                 "logit_max": 1.0 + 0.25 * math.log(L) - 0.2 * h} for L in lengths for h in range(3)]

    (g,) = growth_rows(rows((32, 64, 128, 256)))
    assert (g["slope"], g["intercept"], g["r2"]) == pytest.approx((1.7, 0.5, 1.0), abs=1e-10)
    assert (g["evt_slope"], g["evt_intercept"], g["evt_r2"]) == pytest.approx((0.3, 0.2, 1.0), abs=1e-10)
    assert (g["logit_slope"], g["logit_intercept"], g["logit_r2"]) == pytest.approx((0.25, 1.0, 1.0), abs=1e-10)
    # R² from numpy's own fit on noisy points, over four lengths
    noisy = rows((32, 64, 128, 256))
    for r, e in zip(noisy, np.random.default_rng(0).normal(0, 0.05, len(noisy))):
        r["gamma_q"] += e
    (g,) = growth_rows(noisy)
    x = np.sqrt(np.log([32, 64, 128, 256]))
    y = np.array([max(r["gamma_q"] for r in noisy if r["seq_len"] == L) for L in (32, 64, 128, 256)])
    b, a = np.polyfit(x, y, 1)
    assert g["r2"] == pytest.approx(1 - ((y - a - b * x) ** 2).sum() / ((y - y.mean()) ** 2).sum(), rel=1e-9) and g["r2"] < 1
    (g,) = growth_rows(rows((64, 256)))  # two points: the slope, but no R²
    assert g["slope"] == pytest.approx(1.7, abs=1e-10)
    assert math.isnan(g["r2"]) and math.isnan(g["evt_r2"]) and math.isnan(g["logit_r2"])


def test_seq_len_and_windows_from_the_cli_reach_every_probe_that_has_them(tmp_path, inputs):
    from lab.cli import app

    result = CliRunner().invoke(app, ["analyze", str(inputs["lora"]), "--base", str(inputs["base"]), "--out", str(tmp_path),
                                      "--run", "r", "--probes", "attention,thresholds", "--texts", str(inputs["texts"]),
                                      "--seq-len", "8", "--windows", "1", "--set", "thresholds.windows=2", "--quiet"])
    assert result.exit_code == 0, result.output
    options = json.loads((tmp_path / "r" / "manifest.json").read_text())["options"]["probe_options"]
    assert options["attention"]["seq_len"] == [8] and options["attention"]["windows"] == 1
    assert options["thresholds"]["seq_len"] == [8] and options["thresholds"]["windows"] == 2  # --set wins
    bad = CliRunner().invoke(app, ["analyze", str(inputs["lora"]), "--base", str(inputs["base"]), "--out", str(tmp_path),
                                   "--run", "bad", "--probes", "thresholds", "--seq-len", "8,x", "--quiet"])
    assert bad.exit_code == 2 and "seq_len" in bad.output


def test_a_missing_tokenizer_or_a_base_transformers_cannot_load_is_one_line_exit_2(tmp_path, inputs):
    import shutil

    from lab.cli import app

    bare = tmp_path / "bare"  # the base's weights and config, no tokenizer
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(inputs["base"] / name, bare / name)
    broken = tmp_path / "broken"  # a config transformers cannot build a model from
    shutil.copytree(inputs["base"], broken)
    cfg = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**cfg, "architectures": ["NoSuchModel"], "model_type": "no_such_type"}))
    for folder, words in ((bare, "no tokenizer"), (broken, "cannot load")):
        result = CliRunner().invoke(app, ["analyze", str(inputs["lora"]), "--base", str(folder), "--out", str(tmp_path / "out"),
                                          "--run", folder.name,
                                          "--probes", "thresholds", "--texts", str(inputs["texts"]), "--seq-len", "8",
                                          "--windows", "1", "--quiet"])
        assert result.exit_code == 2, result.output
        assert words in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_each_forward_pass_is_reported_to_the_progress_line(inputs):
    """Model-scope probes tick once per forward pass (the serial engine's bar shows them on a second line)."""
    from lab.probes.registry import ProbeContext, available, reporting_steps
    from lab.probes.thresholds import ThresholdOptions

    subject = ModelSubject("lora", None, inputs["lora"], "adapter", base=inputs["base"], corpus=inputs["texts"])
    labels: list[str] = []
    with reporting_steps(labels.append):
        available()["thresholds"].run(subject, ThresholdOptions(seq_len=(4, 8), windows=3), ProbeContext())
    assert labels == [f"lora thresholds: forward pass {i}/6 (L = {L})" for i, L in zip(range(1, 7), (4, 4, 4, 8, 8, 8))]
    ProbeContext().tick("outside: nobody listens")  # no reporter set: a no-op, never an error


def test_mps_adapter_runs_on_text_like_its_merged_model(tmp_path, inputs):
    """An MPS Adaptation adapter (lab finetune --method mps) is run on text by the engine: its
    thresholds and attention equal those of a full checkpoint holding the merged weights W + ΔW."""
    from lab.finetune.mps import mps_modules, save_mps, wrap_mps

    torch.manual_seed(3)
    model = builders.tiny_llama(seed=0)
    wrap_mps(model, ["q_proj", "k_proj", "v_proj"], r=4, chi=2, alpha=8.0)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for m in mps_modules(model).values():
            for p in (m.mps_B, m.mps_C1, m.mps_C2):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    save_mps(model, tmp_path / "mps", base_path=str(inputs["base"]), targets=["q_proj", "k_proj", "v_proj"])
    # the independent route: the same update merged into a plain model, saved as a full checkpoint
    merged = builders.tiny_llama(seed=0)
    with torch.no_grad():
        for name, m in mps_modules(model).items():
            eye = torch.eye(m.base_layer.in_features)
            bias = m.base_layer.bias if m.base_layer.bias is not None else 0
            merged.get_submodule(name).weight.copy_((m(eye) - bias).T)  # the module's own map, read off the identity
    full = builders.save(merged, tmp_path / "merged")
    settings = dict(base=inputs["base"], probes=["attention", "thresholds"], texts=inputs["texts"], seq_len=(4, 8),
                    windows=2, progress=False)
    mps_run = lab.analyze(tmp_path / "mps", out=tmp_path / "out", run="mps", **settings)
    full_run = lab.analyze(full, out=tmp_path / "out", run="full", **settings)
    key = ["layer", "head", "seq_len", "window"]
    a, b = (r.table("thresholds").sort_values(key).reset_index(drop=True) for r in (mps_run, full_run))
    np.testing.assert_allclose(a[["gamma_q", "gamma_k"]], b[["gamma_q", "gamma_k"]], rtol=1e-5)
    assert (a.gamma_q != a.gamma_q.iloc[0]).any()  # real numbers, not a constant
    # the adapter term alone, s·X·A_MPSᵀ·Bᵀ, is reported for the MPS run (null for a full checkpoint)
    assert a.gamma_lora.notna().all() and b.gamma_lora.isna().all()
    assert ((a.gamma_lora > 0) & (a.gamma_lora < 10 * a.gamma_q)).all()
    a, b = (r.table("attention_summary").sort_values(["layer", "head", "seq_len"]).reset_index(drop=True)
            for r in (mps_run, full_run))
    np.testing.assert_allclose(a["attention_tv"], b["attention_tv"], rtol=1e-4, atol=1e-7)
    assert (a["attention_tv"] > 0).all()  # the update moved the attention


def test_findings_state_growth_beside_the_control_only_from_three_lengths(tmp_path, inputs):
    """The thresholds sentence carries both scales, the largest logit and γ/control; it states the growth and the
    control's slope from the growth table over three lengths, and says it is not fitted over two."""
    from lab.present.findings import summarize

    settings = dict(base=inputs["base"], out=tmp_path, probes=["thresholds"], texts=inputs["texts"], windows=2,
                    progress=False)
    three = lab.analyze(inputs["lora"], run="three", seq_len=[4, 8, 16], **settings)
    two = lab.analyze(inputs["lora"], run="two", seq_len=[8, 16], **settings)
    for run, lengths in ((three, 3), (two, 2)):
        (sentence,) = [s for f in summarize([run]) if f.key == "thresholds" for s in f.sentences]
        rows, growth = run.table("thresholds"), run.table("threshold_growth")
        assert sentence.numbers["ratio_as_max"] == pytest.approx(rows["ratio_as"].max(), rel=1e-12)
        assert sentence.numbers["logit_max"] == pytest.approx(rows["logit_max"].max(), rel=1e-12)
        assert sentence.numbers["evt_ratio_median"] == pytest.approx(
            np.median(np.r_[rows["evt_ratio_q"], rows["evt_ratio_k"]]), rel=1e-12)
        assert sentence.numbers["growth_lengths"] == lengths
        if lengths == 3:
            # (a 30-word vocabulary: the largest γ is the same token's at every L, so its R² is NaN, ss_tot = 0)
            assert growth["evt_r2"].notna().all() and growth["slope"].notna().all()
            assert sentence.numbers["slope_median"] == pytest.approx(growth["slope"].median(), rel=1e-12)
            assert sentence.numbers["evt_slope_median"] == pytest.approx(growth["evt_slope"].median(), rel=1e-12)
            assert sentence.numbers["slope_above_control"] == int((growth["slope"] > growth["evt_slope"]).sum())
        else:
            assert "slope_median" not in sentence.numbers and "not fitted" in sentence.plain()
