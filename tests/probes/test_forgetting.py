"""The forgetting probe (model scope) on real tiny models saved to disk: a checkpoint identical to the base is at KL 0
and hidden-state distance 0 exactly; KL(p_base ‖ p_tuned), the losses and the hidden-state distances of a full
fine-tune and of a PEFT LoRA adapter of a tiny LLaMA equal a direct torch computation written here (models loaded
with transformers and PEFT, torch's kl_div and cross_entropy in float64), on --texts and on reference_texts; a
masked-LM BERT's masked-token KL equals torch's at the probe's masked positions; a bare BertModel (no LM head, as the
packaged MiniLM) gets a row saying the KL is not defined and its hidden-state distances; Dask gives the serial rows;
a missing reference file is one line, exit 2."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, LlamaForCausalLM

import builders
import lab
from builders import texts_file, word_tokenizer
from fuzz.fuzz_helpers import check_empty_values
from lab.probes import forgetting
from lab.probes.forgetting import mask_positions
from lab.probes.windows import make_windows

L_LENGTHS, N_WINDOWS = (8, 12), 3


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny LLaMA base with tokenizer, a copy of it, a full fine-tune, a LoRA on q/v, texts and reference texts."""
    root = tmp_path_factory.mktemp("forgetting")
    base = builders.save(builders.tiny_llama(seed=0), root / "base")
    word_tokenizer(base)
    shutil.copytree(base, root / "same")
    full = builders.save(builders.perturb(builders.tiny_llama(seed=0), seed=3, eps=2e-2), root / "full")
    model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    builders.randomize_lora(model, seed=4, std=0.2)
    model.save_pretrained(root / "lora")
    texts, _ = texts_file(root / "texts.txt", n=30, seed=0)
    reference, _ = texts_file(root / "reference.txt", n=30, seed=1)
    return {"root": root, "base": base, "same": root / "same", "full": full, "lora": root / "lora", "texts": texts,
            "reference": reference}


def _analyze(inputs, ckpts, out, run, **kw):
    return lab.analyze([inputs[c] for c in ckpts], base=inputs["base"], out=out, run=run, probes=["forgetting"],
                       texts=inputs["texts"], seq_len=L_LENGTHS, windows=N_WINDOWS, progress=False,
                       options={"forgetting": {"reference_texts": str(inputs["reference"])}}, **kw)


def _direct(base_model, tuned_model, windows):
    """Per L: (mean KL(p_base ‖ p_tuned), base loss, tuned loss, [mean 1 − cos per hidden state]) from torch, float64,
    next-token positions 0 … L−2."""
    out = {}
    for L in sorted({w.seq_len for w in windows}):
        kl, lb, lt, cos = [], [], [], []
        for w in (w for w in windows if w.seq_len == L):
            ids = torch.tensor([w.ids])
            with torch.no_grad():
                b = base_model(input_ids=ids, output_hidden_states=True)
                t = tuned_model(input_ids=ids, output_hidden_states=True)
            log_p = torch.log_softmax(b.logits[0, :-1].double(), -1)
            log_q = torch.log_softmax(t.logits[0, :-1].double(), -1)
            kl.append(F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1).mean().item())
            lb.append(F.cross_entropy(b.logits[0, :-1].double(), ids[0, 1:]).item())
            lt.append(F.cross_entropy(t.logits[0, :-1].double(), ids[0, 1:]).item())
            cos.append([(1 - F.cosine_similarity(hb[0].double(), ht[0].double(), dim=-1)).mean().item()
                        for hb, ht in zip(b.hidden_states, t.hidden_states)])
        out[L] = (np.mean(kl), np.mean(lb), np.mean(lt), np.mean(cos, axis=0))
    return out


@pytest.mark.parametrize("block", [7 * 300, 1 << 22])  # several row blocks, and one
def test_the_pure_functions_equal_torch_in_row_blocks(monkeypatch, block):
    monkeypatch.setattr(forgetting, "BLOCK_ENTRIES", block)
    rng = np.random.default_rng(0)
    a, b = (rng.normal(scale=3.0, size=(50, 300)).astype(np.float32) for _ in range(2))
    t = rng.integers(0, 300, 50)
    ta, tb = torch.tensor(a).double(), torch.tensor(b).double()
    kl = F.kl_div(torch.log_softmax(tb, -1), torch.log_softmax(ta, -1), log_target=True, reduction="none").sum(-1)
    np.testing.assert_allclose(forgetting.kl_divergence(a, b), kl.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(forgetting.cross_entropy(a, t), F.cross_entropy(ta, torch.tensor(t), reduction="none").numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(forgetting.cosine_distance(a, b), (1 - F.cosine_similarity(ta, tb, dim=-1)).numpy(),
                               rtol=1e-10)
    assert (forgetting.kl_divergence(a, a) == 0).all() and (forgetting.cosine_distance(a, a) == 0).all()


def test_a_checkpoint_identical_to_the_base_is_at_kl_0_and_distance_0(tmp_path, inputs):
    run = _analyze(inputs, ["same"], tmp_path, "same")
    f, layers = run.table("forgetting"), run.table("forgetting_layers")
    assert sorted(set(f["text_set"])) == ["reference", "texts"] and len(f) == 2 * len(L_LENGTHS)
    assert (f["kl"] == 0.0).all() and (f["loss_change"] == 0.0).all() and (f["base_loss"] > 0).all()
    assert (f["objective"] == "next_token").all() and (f["positions"] == f["seq_len"] - 1).all()
    assert (layers["cosine_distance"] == 0.0).all() and (layers["relative_distance"] == 0.0).all()
    assert len(layers) == 2 * len(L_LENGTHS) * 3  # embeddings + 2 blocks
    check_empty_values(run)


@pytest.mark.parametrize("which", ["full", "lora"])
def test_kl_losses_and_distances_equal_a_direct_torch_computation(tmp_path, inputs, which):
    run = _analyze(inputs, [which], tmp_path, which)
    f, layers = run.table("forgetting"), run.table("forgetting_layers")
    kw = {"dtype": torch.float32, "attn_implementation": "eager"}
    base_model = LlamaForCausalLM.from_pretrained(inputs["base"], **kw).eval()
    tuned = (PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(inputs["base"], **kw), inputs["lora"])
             if which == "lora" else LlamaForCausalLM.from_pretrained(inputs["full"], **kw)).eval()
    tok = AutoTokenizer.from_pretrained(inputs["base"])
    for text_set, path in (("texts", inputs["texts"]), ("reference", inputs["reference"])):
        lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
        windows = make_windows(tok, lines, L_LENGTHS, N_WINDOWS)
        for L, (kl, lb, lt, cos) in _direct(base_model, tuned, windows).items():
            row = f[(f.text_set == text_set) & (f.seq_len == L)].iloc[0]
            assert row["kl"] > 1e-4  # the update moved the predictions: the comparison below is not 0 = 0
            np.testing.assert_allclose(row["kl"], kl, rtol=1e-9)
            np.testing.assert_allclose([row["base_loss"], row["tuned_loss"]], [lb, lt], rtol=1e-9)
            np.testing.assert_allclose(row["loss_change"], lt - lb, rtol=1e-7, atol=1e-12)
            assert row["kl_lo"] <= row["kl"] <= row["kl_hi"]
            got = layers[(layers.text_set == text_set) & (layers.seq_len == L)].sort_values("hidden_state")
            np.testing.assert_allclose(got["cosine_distance"], cos, rtol=1e-6, atol=1e-12)
    if which == "lora":  # LoRA on q and v leaves the embeddings' output untouched
        assert (layers.loc[layers.hidden_state == 0, "cosine_distance"] == 0.0).all()
        assert layers.loc[layers.hidden_state == 0, "layer"].isna().all()
    check_empty_values(run)


def test_dask_gives_the_serial_rows(tmp_path, inputs):
    serial = _analyze(inputs, ["full", "lora"], tmp_path / "s", "two")
    dask = _analyze(inputs, ["full", "lora"], tmp_path / "d", "two", workers=2)
    for table, keys in (("forgetting", ["checkpoint", "text_set", "seq_len"]),
                        ("forgetting_layers", ["checkpoint", "text_set", "seq_len", "hidden_state"])):
        a = serial.table(table).drop(columns="run").sort_values(keys).reset_index(drop=True)
        b = dask.table(table).drop(columns="run").sort_values(keys).reset_index(drop=True)
        assert len(a) and a.equals(b), table


def _mask_tokenizer(folder):
    """The word tokenizer with [SEP] and [MASK] (a BERT-style tokenizer for a masked-LM head)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "[SEP]": 1, "[MASK]": 2, **{w: i + 3 for i, w in enumerate(dict.fromkeys(builders.WORDS))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)


def test_a_masked_lm_gets_the_masked_token_kl_and_a_bare_encoder_a_row_saying_it_has_none(tmp_path, inputs):
    cfg = BertConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                     max_position_embeddings=64)
    torch.manual_seed(0)
    base = builders.save(BertForMaskedLM(cfg), tmp_path / "mlm-base")
    _mask_tokenizer(base)
    tuned = builders.save(builders.perturb(BertForMaskedLM.from_pretrained(base), seed=5, eps=2e-2), tmp_path / "mlm-full")
    run = lab.analyze([tuned], base=base, out=tmp_path / "out", run="mlm", probes=["forgetting"], texts=inputs["texts"],
                      seq_len=(12,), windows=N_WINDOWS, progress=False, seed=7,
                      options={"forgetting": {"mask_fraction": 0.25}})
    row = run.table("forgetting").iloc[0]
    assert row["objective"] == "masked_token" and row["positions"] == 3
    b_model = BertForMaskedLM.from_pretrained(base, attn_implementation="eager").eval()
    t_model = BertForMaskedLM.from_pretrained(tuned, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(base)
    lines = [ln.strip() for ln in Path(inputs["texts"]).read_text().splitlines() if ln.strip()]
    kl, change = [], []
    for w in make_windows(tok, lines, (12,), N_WINDOWS):
        pos = torch.as_tensor(mask_positions(12, 0.25, 7, w.index))
        ids = torch.tensor([w.ids])
        masked = ids.clone()
        masked[0, pos] = tok.mask_token_id
        with torch.no_grad():
            lb, lt = (m(input_ids=masked).logits[0, pos].double() for m in (b_model, t_model))
        kl.append(F.kl_div(torch.log_softmax(lt, -1), torch.log_softmax(lb, -1), log_target=True,
                           reduction="none").sum(-1).mean().item())
        change.append((F.cross_entropy(lt, ids[0, pos]) - F.cross_entropy(lb, ids[0, pos])).item())
    np.testing.assert_allclose(row["kl"], np.mean(kl), rtol=1e-9)
    np.testing.assert_allclose(row["loss_change"], np.mean(change), rtol=1e-7)

    bare = builders.save(builders.tiny_bert(seed=0), tmp_path / "bare-base")
    _mask_tokenizer(bare)
    bare_tuned = builders.save(builders.perturb(builders.tiny_bert(seed=0), seed=6, eps=2e-2), tmp_path / "bare-full")
    run = lab.analyze([bare_tuned], base=bare, out=tmp_path / "out", run="bare", probes=["forgetting"],
                      texts=inputs["texts"], seq_len=(12,), windows=N_WINDOWS, progress=False)
    row = run.table("forgetting").iloc[0]
    assert row["objective"] == "none" and np.isnan(row["kl"]) and np.isnan(row["loss_change"])
    assert "BertModel has no language-modelling head" in row["note"] and "\n" not in row["note"]
    layers = run.table("forgetting_layers")
    assert len(layers) == 3 and (layers["cosine_distance"] > 0).all()
    check_empty_values(run)


def test_a_missing_reference_file_is_one_line_and_exit_2(tmp_path, inputs):
    cmd = [sys.executable, "-m", "lab.cli", "analyze", str(inputs["full"]), "--base", str(inputs["base"]), "--probes",
           "forgetting", "--texts", str(inputs["texts"]), "--seq-len", "8", "--windows", "2",
           "--set", f"forgetting.reference_texts={tmp_path / 'nope.txt'}", "--out", str(tmp_path), "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "nope.txt" in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "full").exists()  # refused before a run folder was made


def test_the_reference_texts_flag_gives_the_rows_of_the_option_and_is_recorded(tmp_path, inputs):
    """`lab analyze --reference-texts PATH` (the CLI, in a subprocess) writes the rows that the
    forgetting.reference_texts option writes, and the manifest records the file with its sha256."""
    import hashlib
    import json

    cmd = [sys.executable, "-m", "lab.cli", "analyze", str(inputs["full"]), "--base", str(inputs["base"]), "--probes",
           "forgetting", "--texts", str(inputs["texts"]), "--reference-texts", str(inputs["reference"]), "--seq-len",
           "8", "--windows", "2", "--out", str(tmp_path / "cli"), "--run", "r", "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    by_option = lab.analyze([inputs["full"]], base=inputs["base"], out=tmp_path / "api", run="r", probes=["forgetting"],
                            texts=inputs["texts"], seq_len=(8,), windows=2, progress=False,
                            options={"forgetting": {"reference_texts": str(inputs["reference"])}})
    from lab.store import open_run

    got, want = open_run(tmp_path / "cli" / "r").table("forgetting"), by_option.table("forgetting")
    assert sorted(got["text_set"]) == ["reference", "texts"]
    cols = ["text_set", "kl", "base_loss", "tuned_loss", "loss_change"]
    pd_sort = lambda d: d[cols].sort_values("text_set").reset_index(drop=True)  # noqa: E731
    assert pd_sort(got).equals(pd_sort(want))
    manifest = json.loads((tmp_path / "cli" / "r" / "manifest.json").read_text())
    path = str(Path(inputs["reference"]).resolve())
    assert manifest["options"]["reference_texts"] == path
    assert manifest["options"]["probe_options"]["forgetting"]["reference_texts"] == path
    digest = hashlib.sha256(Path(inputs["reference"]).read_bytes()).hexdigest()
    assert digest in json.dumps(manifest["inputs"]["reference_texts"])


def test_the_reference_texts_flag_without_a_probe_that_reads_it_is_one_line_and_exit_2(tmp_path, inputs):
    cmd = [sys.executable, "-m", "lab.cli", "analyze", str(inputs["full"]), "--base", str(inputs["base"]), "--probes",
           "spectra", "--reference-texts", str(inputs["reference"]), "--out", str(tmp_path), "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--reference-texts" in lines[0] and "forgetting" in lines[0]
    assert "Traceback" not in r.stderr and not (tmp_path / "full").exists()


def test_resuming_with_other_reference_texts_at_the_same_path_is_refused(tmp_path, inputs):
    """The reference file's sha256 is part of the run's inputs: the same path with other content is not the run
    that was made."""
    from lab.engine.analyze import ResumeError

    reference = tmp_path / "reference.txt"
    shutil.copy(inputs["reference"], reference)
    kw = dict(base=inputs["base"], out=tmp_path / "out", run="r", probes=["forgetting"], texts=inputs["texts"],
              reference_texts=reference, seq_len=(8,), windows=2, progress=False)
    lab.analyze([inputs["full"]], **kw)
    assert lab.analyze([inputs["full"]], resume=True, **kw).table("forgetting") is not None  # same file: resumes
    reference.write_text(Path(inputs["texts"]).read_text())
    with pytest.raises(ResumeError, match="input files differ"):
        lab.analyze([inputs["full"]], resume=True, **kw)
