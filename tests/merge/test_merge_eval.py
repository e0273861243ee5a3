"""lab merge --eval-texts: the merge_eval table's losses equal a direct PEFT forward on the same
windows, with the loss written out here (causal LM on the tiny LLaMA, InfoNCE on a tiny BERT)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from typer.testing import CliRunner

import builders
from conftest import bert_base, make_adapter
from lab.cli import app


def _texts(path, seed, n=30):
    rng = np.random.default_rng(seed)
    words = list(dict.fromkeys(builders.WORDS))[: 8 + 6 * seed]  # two sets with different vocabularies
    path.write_text("\n".join(" ".join(rng.choice(words, 7)) for _ in range(n)) + "\n")
    return path


def _windows(tok, path, sep, L, N):
    """The windows as the activation probes define them, rebuilt here: lines tokenized without special
    tokens, joined by the separator, cut into the first N windows of L tokens."""
    stream = []
    for line in path.read_text().splitlines():
        stream += ([sep] if stream else []) + tok(line, add_special_tokens=False)["input_ids"]
    return torch.tensor([stream[i * L:(i + 1) * L] for i in range(N)])


def _merge(tmp_path, paths, base, evals, *args):
    out = tmp_path / "merged"
    result = CliRunner().invoke(app, ["merge", *map(str, paths), "--out", str(out), "--results", str(tmp_path / "results"),
                                      "--base", str(base), "--eval-texts", ",".join(map(str, evals)),
                                      "--seq-len", "8", "--windows", "5", *args])
    assert result.exit_code == 0, result.output
    return out, pd.read_parquet(tmp_path / "results" / "merges" / "merge_eval.parquet")


def test_causal_lm_losses_equal_peft_forward(tmp_path):
    base = builders.save(builders.tiny_llama(seed=0), tmp_path / "base")
    tok = builders.word_tokenizer(base)
    paths = [make_adapter(tmp_path / n, s, r=4, lora_alpha=8) for n, s in (("a", 1), ("b", 2))]
    evals = [_texts(tmp_path / "one.txt", 1), _texts(tmp_path / "two.txt", 2)]
    out, t = _merge(tmp_path, paths, base, evals, "--method", "lego", "--rank", "3")
    assert len(t) == 4 * 2 and set(t.kind) == {"merged", "input", "base"} and (t.objective == "causal-lm").all()
    models = {"merged": PeftModel.from_pretrained(builders.tiny_llama(seed=0), out),  # the merged adapter loads in PEFT
              "a": PeftModel.from_pretrained(builders.tiny_llama(seed=0), paths[0]),
              "b": PeftModel.from_pretrained(builders.tiny_llama(seed=0), paths[1]), "base": builders.tiny_llama(seed=0)}
    for path in evals:
        ids = _windows(tok, path, tok.eos_token_id, 8, 5)
        for name, model in models.items():
            with torch.no_grad():
                logits = model.eval()(input_ids=ids).logits.double()
            want = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)).item()
            row = t[(t.checkpoint == name) & (t.texts == path.stem)]
            assert len(row) == 1 and row.loss.iloc[0] == pytest.approx(want, rel=1e-6), (name, path.stem)
            assert row.loss_change.iloc[0] == pytest.approx(row.loss.iloc[0] - row.base_loss.iloc[0], abs=1e-12)
    # a second merge adds its rows beside the first one's
    _, result = CliRunner().invoke(app, ["merge", *map(str, paths), "--out", str(tmp_path / "stacked"), "--results",
                                         str(tmp_path / "results"), "--base", str(base), "--eval-texts", str(evals[0]),
                                         "--seq-len", "8", "--windows", "5"]), None
    t = pd.read_parquet(tmp_path / "results" / "merges" / "merge_eval.parquet")
    assert set(t.merged) == {"merged", "stacked"} and len(t) == 8 + 4
    _presented(tmp_path / "results" / "merges", t)


def _presented(run_folder, t):
    """The findings sentences, the digest and the chart carry the merge_eval numbers, recomputed here with pandas."""
    from lab.present.digests import merge_eval
    from lab.present.figures.msu import merge_eval_chart
    from lab.present.findings import summarize
    from lab.store import open_run

    run = open_run(run_folder)
    [merge] = [f for f in summarize([run]) if f.key == "merge"]
    numbers = {}
    for sentence in merge.sentences:
        numbers.update(sentence.numbers)
    for texts, g in t.groupby("texts"):
        assert numbers[f"base_loss[{texts}]"] == pytest.approx(g[g.kind == "base"].loss.iloc[0], rel=1e-12)
        assert numbers[f"best_input_loss[{texts}]"] == pytest.approx(g[g.kind == "input"].loss.min(), rel=1e-12)
        for r in g[g.kind == "merged"].itertuples():
            assert numbers[f"loss[{r.merged}][{texts}]"] == pytest.approx(r.loss, rel=1e-12)
    digest = merge_eval(t)
    assert len(digest) == (t.kind == "merged").sum()
    for r in digest.itertuples():
        ins = t[(t.kind == "input") & (t.merged == r.merged) & (t.texts == r.texts)]
        assert r.best_input_loss == pytest.approx(ins.loss.min()) and r.best_input == ins.loc[ins.loss.idxmin(), "checkpoint"]
    chart = merge_eval_chart(t)
    drawn = [l for ax in chart.figure.axes for l in ax.get_lines()]
    assert any(np.allclose(l.get_ydata(), t[(t.kind == "merged") & (t.method == "lego")].loss.iloc[:1]) for l in drawn)
    from lab.report import content

    report = content.build(run_folder)
    [section] = [x for x in report.sections if x.key == "merge"]
    [block] = [b for b in section.tables if b.title.startswith("Held-out loss")]
    assert len(block.rows) == len(digest) and len(section.charts) == 2
    report.close()


def test_contrastive_losses_equal_peft_forward(tmp_path):
    base, tok = bert_base(tmp_path / "bert")
    paths = []
    for n, s in (("a", 1), ("b", 2)):
        model = get_peft_model(builders.tiny_bert(seed=0), LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value"]))
        builders.randomize_lora(model, seed=s, std=0.3)
        model.save_pretrained(tmp_path / n)
        paths.append(tmp_path / n)
    evals = [_texts(tmp_path / "one.txt", 1), _texts(tmp_path / "two.txt", 2)]
    out, t = _merge(tmp_path, paths, base, evals, "--method", "svd", "--rank", "2")
    assert (t.objective == "contrastive").all()
    models = {"merged": PeftModel.from_pretrained(builders.tiny_bert(seed=0), out),
              "a": PeftModel.from_pretrained(builders.tiny_bert(seed=0), paths[0]), "base": builders.tiny_bert(seed=0)}
    for path in evals:
        ids = _windows(tok, path, tok.sep_token_id, 8, 5)
        cls, sep = torch.full((5, 1), tok.cls_token_id), torch.full((5, 1), tok.sep_token_id)
        for name, model in models.items():
            with torch.no_grad():
                a = model.eval()(input_ids=torch.cat([cls, ids[:, :4], sep], 1)).last_hidden_state.double().mean(1)
                p = model(input_ids=torch.cat([cls, ids[:, 4:], sep], 1)).last_hidden_state.double().mean(1)
            sim = (a / a.norm(dim=1, keepdim=True)) @ (p / p.norm(dim=1, keepdim=True)).T / 0.05
            want = -torch.log_softmax(sim, dim=1).diagonal().mean().item()
            row = t[(t.checkpoint == name) & (t.texts == path.stem)]
            assert row.loss.iloc[0] == pytest.approx(want, rel=1e-6), (name, path.stem)
    assert t[t.kind == "merged"].loss.nunique() == 2  # the text sets differ


def test_eval_texts_without_base_is_one_line_exit_2(tmp_path):
    paths = [make_adapter(tmp_path / n, s, r=2, lora_alpha=2) for n, s in (("a", 1), ("b", 2))]
    result = CliRunner().invoke(app, ["merge", *map(str, paths), "--out", str(tmp_path / "m"), "--results",
                                      str(tmp_path / "results"), "--eval-texts", str(_texts(tmp_path / "x.txt", 1))])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "m").exists() and not (tmp_path / "results").exists()
