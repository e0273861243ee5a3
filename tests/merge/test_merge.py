"""lab merge on real PEFT adapters: written adapters load in PEFT, and their updates are checked
against PEFT's own get_delta_weight, PEFT's add_weighted_adapter and numpy."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from typer.testing import CliRunner

import builders
from conftest import make_adapter
from lab.cli import app


def peft_deltas(adapter_paths, names=None):
    """PEFT's get_delta_weight (float64) of every module, per adapter loaded into one PeftModel."""
    names = names or [f"a{i}" for i in range(len(adapter_paths))]
    model = PeftModel.from_pretrained(builders.tiny_llama(seed=0), adapter_paths[0], adapter_name=names[0])
    for name, path in zip(names[1:], adapter_paths[1:]):
        model.load_adapter(path, adapter_name=name)
    return model, _deltas(model, names)


def _deltas(model, names):
    pm = copy.deepcopy(model).double()
    out = {n: {} for n in names}
    for module, layer in pm.base_model.model.named_modules():
        if isinstance(layer, LoraLayer):
            for n in names:
                if n in layer.lora_A:
                    out[n][module] = layer.get_delta_weight(n).detach().numpy()
    return out


def run_merge(tmp_path, paths, out_name, *args):
    out = tmp_path / out_name
    result = CliRunner().invoke(app, ["merge", *map(str, paths), "--out", str(out), "--results", str(tmp_path / "results"), *args])
    return out, result


def table(tmp_path, name):
    t = pd.read_parquet(tmp_path / "results" / "merges" / "merge.parquet")
    return t[t.checkpoint == name].set_index("module")


def rel(x, y):
    return np.linalg.norm(x - y) / np.linalg.norm(y)


def test_stack_is_the_exact_weighted_sum_heterogeneous_ranks_mixed_scales(tmp_path, adapters):
    paths = [adapters["a"], adapters["b"], adapters["c"]]
    w = [0.5, -1.25, 2.0]
    out, result = run_merge(tmp_path, paths, "stacked", "--method", "stack", "--weights", ",".join(map(str, w)))
    assert result.exit_code == 0, result.output
    _, inputs = peft_deltas(paths)
    merged_model, merged = peft_deltas([out], ["m"])
    merged = merged["m"]
    modules = set().union(*(d.keys() for d in inputs.values()))
    assert set(merged) == modules  # the union: c's o_proj is merged too
    t = table(tmp_path, "stacked")
    for module in modules:
        want = sum(wj * inputs[f"a{j}"][module] for j, wj in enumerate(w) if module in inputs[f"a{j}"])
        got = merged[module]
        assert rel(got, want) < 1e-6  # float32 storage
        assert t.loc[module, "rel_fro_error"] < 1e-14
        assert t.loc[module, "stored_rel_fro_error"] == pytest.approx(rel(got, want), rel=1e-3, abs=1e-12)
        assert t.loc[module, "k"] == t.loc[module, "pooled_units"] == merged_model.base_model.model.get_submodule(module).r["m"]
    assert t.loc["model.layers.0.self_attn.o_proj", "members"] == "c"
    assert t.loc["model.layers.0.self_attn.q_proj", "members"] == "a,b,c"


def test_linear_matches_peft_add_weighted_adapter_and_has_cross_terms(tmp_path, adapters):
    paths = [adapters["a"], adapters["b"]]
    out, result = run_merge(tmp_path, paths, "linear", "--method", "linear", "--weights", "0.7,0.3")
    assert result.exit_code == 0, result.output
    model, inputs = peft_deltas(paths)
    model.add_weighted_adapter(["a0", "a1"], [0.7, 0.3], "peft_linear", combination_type="linear")
    reference = _deltas(model, ["peft_linear"])["peft_linear"]
    _, merged = peft_deltas([out], ["m"])
    t = table(tmp_path, "linear")
    for module, want in reference.items():
        assert rel(merged["m"][module], want) < 1e-6
        exact = 0.7 * inputs["a0"][module] + 0.3 * inputs["a1"][module]
        assert t.loc[module, "rel_fro_error"] == pytest.approx(rel(want, exact), rel=1e-5)
        assert t.loc[module, "rel_fro_error"] > 0.1  # two independent adapters: the cross terms are large


def test_svd_is_numpys_truncated_svd_of_the_dense_sum(tmp_path, adapters):
    paths = [adapters["a"], adapters["b"], adapters["c"]]
    out, result = run_merge(tmp_path, paths, "svd3", "--method", "svd", "--rank", "3")
    assert result.exit_code == 0, result.output
    _, inputs = peft_deltas(paths)
    _, merged = peft_deltas([out], ["m"])
    t = table(tmp_path, "svd3")
    for module, got in merged["m"].items():
        dense = sum(d[module] for d in inputs.values() if module in d) / 3
        U, s, Vt = np.linalg.svd(dense)
        k = min(3, int(t.loc[module, "pooled_units"]))
        best = (U[:, :k] * s[:k]) @ Vt[:k]
        assert rel(got, best) < 1e-5
        assert t.loc[module, "rel_fro_error"] == pytest.approx(np.sqrt((s[k:] ** 2).sum()) / np.linalg.norm(s), rel=1e-8)
        assert t.loc[module, "rel_fro_error"] == pytest.approx(t.loc[module, "optimal_rel_fro_error"], rel=1e-10)
        assert t.loc[module, "rel_spectral_error"] == pytest.approx(s[k] / s[0], rel=1e-8)


def test_lego_with_every_unit_and_writes_a_loadable_adapter(tmp_path, adapters):
    """k = the pooled units, no reweighting: lego sums the units as trained (J·w_j = 1 each), i.e. the
    inputs' sum, twice the mean T; lego-oracle (weights folded in, n_c = 1) is the stack."""
    paths = [adapters["a"], adapters["b"]]
    out, result = run_merge(tmp_path, paths, "lego8", "--method", "lego", "--rank", "8", "--no-reweight")
    assert result.exit_code == 0, result.output
    _, inputs = peft_deltas(paths)
    _, merged = peft_deltas([out], ["m"])
    for module, got in merged["m"].items():
        assert rel(got, inputs["a0"][module] + inputs["a1"][module]) < 1e-5
    assert (table(tmp_path, "lego8").rel_fro_error - 1).abs().max() < 1e-6
    _, result = run_merge(tmp_path, paths, "oracle8", "--method", "lego-oracle", "--rank", "8", "--no-reweight")
    assert result.exit_code == 0, result.output
    assert (table(tmp_path, "oracle8").rel_fro_error < 1e-13).all()
    out, result = run_merge(tmp_path, paths, "lego3", "--method", "lego", "--rank", "3")
    assert result.exit_code == 0, result.output
    t = table(tmp_path, "lego3")
    _, inputs = peft_deltas(paths)
    _, merged = peft_deltas([out], ["m"])
    for module, got in merged["m"].items():
        exact = (inputs["a0"][module] + inputs["a1"][module]) / 2
        assert t.loc[module, "rel_fro_error"] == pytest.approx(rel(got, exact), rel=1e-4)
        assert t.loc[module, "rel_fro_error"] >= t.loc[module, "optimal_rel_fro_error"] - 1e-12


@pytest.mark.parametrize("case", ["weights", "no_overlap", "rank", "dora", "base", "linear_ranks", "rank_with_stack"])
def test_bad_inputs_are_one_line_exit_2_nothing_written(tmp_path, adapters, case):
    a, b, c = adapters["a"], adapters["b"], adapters["c"]
    args = {
        "weights": ([a, b], ["--weights", "1,2,3"]),
        "no_overlap": ([make_adapter(tmp_path / "q", 1, r=2, lora_alpha=2, target_modules=["q_proj"]),
                        make_adapter(tmp_path / "v", 2, r=2, lora_alpha=2, target_modules=["v_proj"])], []),
        "rank": ([a, b], ["--method", "svd", "--rank", "9"]),
        "dora": ([a, make_adapter(tmp_path / "dora", 3, r=4, lora_alpha=8, use_dora=True)], []),
        "base": ([tmp_path / "one", tmp_path / "other"], []),
        "linear_ranks": ([a, c], ["--method", "linear"]),
        "rank_with_stack": ([a, b], ["--rank", "2"]),
    }[case]
    if case == "base":
        for name, base in (("one", "org/base-one"), ("other", "org/base-two")):  # as saved from two hub models
            other = make_adapter(tmp_path / name, 4, r=4, lora_alpha=8)
            config = json.loads((other / "adapter_config.json").read_text())
            config["base_model_name_or_path"] = base
            (other / "adapter_config.json").write_text(json.dumps(config))
    out, result = run_merge(tmp_path, args[0], "bad", *args[1])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error:"), result.output
    assert not out.exists() and not (tmp_path / "results").exists()


def _word_tokenizer(folder, words):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "</s>": 1, **{w: i + 2 for i, w in enumerate(dict.fromkeys(words))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>").save_pretrained(folder)


def test_hidden_state_error_against_the_exact_sum(tmp_path, adapters):
    import torch

    base = builders.save(builders.tiny_llama(seed=0), tmp_path / "base")
    words = "the merged model reads every token and the exact sum gives the reference states".split()
    _word_tokenizer(base, words)
    rng = np.random.default_rng(0)
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(" ".join(rng.choice(words, 8)) for _ in range(20)) + "\n")
    paths = [adapters["a"], adapters["b"]]
    common = ["--base", str(base), "--texts", str(texts), "--seq-len", "8", "--windows", "4"]
    _, result = run_merge(tmp_path, paths, "h_stack", "--method", "stack", *common)
    assert result.exit_code == 0, result.output
    out, result = run_merge(tmp_path, paths, "h_svd", "--method", "svd", "--rank", "1", *common)
    assert result.exit_code == 0, result.output
    exact_err = table(tmp_path, "h_stack").hidden_rel_error
    svd_err = table(tmp_path, "h_svd").hidden_rel_error
    assert exact_err.nunique() == 1 and exact_err.iloc[0] < 1e-4  # only the float32 rounding of the stored factors
    # independently: PEFT's own models on the same windows (the stream of the tokenized texts, joined by eos)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    stream = []
    for line in texts.read_text().splitlines():
        stream += ([tok.eos_token_id] if stream else []) + tok(line, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([stream[i * 8:(i + 1) * 8] for i in range(4)])

    def hidden(model):
        with torch.no_grad():
            return model(input_ids=ids, output_hidden_states=True).hidden_states[-1].double().numpy()

    model, _ = peft_deltas(paths)
    model.add_weighted_adapter(["a0", "a1"], [0.5, 0.5], "cat", combination_type="cat")
    model.set_adapter("cat")
    H_T = hidden(model)
    with model.disable_adapter():
        H_0 = hidden(model)
    H_M = hidden(PeftModel.from_pretrained(builders.tiny_llama(seed=0), out))
    want = np.linalg.norm(H_M - H_T) / np.linalg.norm(H_T - H_0)
    assert svd_err.iloc[0] == pytest.approx(want, rel=1e-3) and want > 1e-3
