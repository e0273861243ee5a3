"""Full fine-tunes merged as task vectors (lab merge FT1 FT2 --base BASE): the folder loads with
transformers and holds W_0 + M with M the numpy implementation of the method on W_j − W_0 read with
safetensors; merge_eval rows for every task-vector method (a direct forward on the same windows)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from peft import PeftModel
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

import builders
from conftest import make_adapter
from lab.cli import app
from test_merge_eval import _texts, _windows
from test_task_vectors import numpy_merge


@pytest.fixture(scope="module")
def full_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("full_merge")
    base = builders.save(builders.tiny_llama(seed=0), root / "base")
    builders.word_tokenizer(base)
    fts = [builders.save(builders.perturb(builders.tiny_llama(seed=0), seed=s), root / f"ft{s}") for s in (1, 2)]
    return base, fts


@pytest.mark.parametrize("method,args", [("ties", ["--density", "0.4"]), ("dare_linear", ["--density", "0.5", "--seed", "4"]),
                                         ("task_arithmetic", [])])
def test_full_fine_tunes_merge_as_task_vectors_and_load(tmp_path, full_models, method, args):
    base, fts = full_models
    out = tmp_path / "merged"
    result = CliRunner().invoke(app, ["merge", *map(str, fts), "--base", str(base), "--out", str(out), "--method", method,
                                      "--weights", "0.7,0.6", "--results", str(tmp_path / "results"), *args])
    assert result.exit_code == 0, result.output
    model = AutoModelForCausalLM.from_pretrained(out)  # loads with transformers
    got = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    W0 = load_file(base / "model.safetensors")
    Ws = [load_file(f / "model.safetensors") for f in fts]
    d = float(args[1]) if args else 1.0
    # DARE draws tensor by tensor in the base's key order (natural sort), one generator for the whole merge
    gen = torch.Generator().manual_seed(4)
    t = pd.read_parquet(tmp_path / "results" / "merges" / "merge.parquet").set_index("module")
    from lab.checkpoints.naming import natural_key

    for key in sorted(W0, key=natural_key):
        w0 = W0[key].astype(np.float64)
        taus = [(W[key].astype(np.float64) - w0).reshape(w0.shape[0], -1) if w0.ndim else None for W in Ws]
        if method.startswith("dare"):
            masks = [torch.bernoulli(torch.full(x.shape, d, dtype=torch.float32), generator=gen).numpy() for x in taus]
            want = sum(wj * x * mk / d for wj, x, mk in zip([0.7, 0.6], taus, masks))
        else:
            want = numpy_merge(taus, [0.7, 0.6], method, d)
        np.testing.assert_allclose(got[key].reshape(want.shape), (w0.reshape(want.shape) + want).astype(np.float32),
                                   rtol=0, atol=1e-6, err_msg=key)
        if w0.ndim == 2:
            T = 0.7 * taus[0] + 0.6 * taus[1]
            module = key.removesuffix(".weight")
            assert t.loc[module, "rel_fro_error"] == pytest.approx(np.linalg.norm(want - T) / np.linalg.norm(T), rel=1e-9, abs=1e-14)
            assert pd.isna(t.loc[module, "k"]) and pd.isna(t.loc[module, "truncation_rel_fro_error"])


def test_full_merge_without_base_or_with_adapters_is_one_line(tmp_path, full_models, adapters):
    base, fts = full_models
    for args in (["--method", "ties", "--density", "0.5"], ["--base", str(base), "--method", "lego"],
                 ["--base", str(base), "--method", "ties"], ["--base", str(base), "--method", "task_arithmetic", "--rank", "2"]):
        result = CliRunner().invoke(app, ["merge", *map(str, fts), "--out", str(tmp_path / "o"), "--results",
                                          str(tmp_path / "r"), *args])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("method,args", [("ties", ["--density", "0.5"]), ("dare_ties", ["--density", "0.5"]),
                                         ("magnitude_prune", ["--density", "0.3"]), ("dare_linear", ["--density", "0.7"]),
                                         ("task_arithmetic", ["--rank", "2"])])
def test_merge_eval_applies_to_every_task_vector_method(tmp_path, method, args):
    base = builders.save(builders.tiny_llama(seed=0), tmp_path / "base")
    tok = builders.word_tokenizer(base)
    paths = [make_adapter(tmp_path / n, s, r=4, lora_alpha=8) for n, s in (("a", 1), ("b", 2))]
    evals = [_texts(tmp_path / "one.txt", 1)]
    out = tmp_path / "merged"
    result = CliRunner().invoke(app, ["merge", *map(str, paths), "--out", str(out), "--results", str(tmp_path / "results"),
                                      "--base", str(base), "--eval-texts", str(evals[0]), "--seq-len", "8", "--windows", "5",
                                      "--method", method, *args])
    assert result.exit_code == 0, result.output
    t = pd.read_parquet(tmp_path / "results" / "merges" / "merge_eval.parquet")
    assert set(t.kind) == {"merged", "input", "base"} and (t.method == method).all()
    ids = _windows(tok, evals[0], tok.eos_token_id, 8, 5)
    with torch.no_grad():
        logits = PeftModel.from_pretrained(builders.tiny_llama(seed=0), out).eval()(input_ids=ids).logits.double()
    want = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)).item()
    assert t[t.kind == "merged"].loss.item() == pytest.approx(want, rel=1e-6)


def test_full_merge_eval(tmp_path, full_models):
    base, fts = full_models
    evals = [_texts(tmp_path / "one.txt", 1)]
    out = tmp_path / "merged"
    result = CliRunner().invoke(app, ["merge", *map(str, fts), "--out", str(out), "--results", str(tmp_path / "results"),
                                      "--base", str(base), "--eval-texts", str(evals[0]), "--seq-len", "8", "--windows", "5",
                                      "--method", "ties", "--density", "0.5"])
    assert result.exit_code == 0, result.output
    t = pd.read_parquet(tmp_path / "results" / "merges" / "merge_eval.parquet")
    tok = builders.word_tokenizer(tmp_path / "tok")
    ids = _windows(tok, evals[0], tok.eos_token_id, 8, 5)
    for name, folder in (("merged", out), ("ft1", fts[0]), ("base", base)):
        with torch.no_grad():
            logits = AutoModelForCausalLM.from_pretrained(folder).eval()(input_ids=ids).logits.double()
        want = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)).item()
        assert t[t.checkpoint == name].loss.item() == pytest.approx(want, rel=1e-6), name
