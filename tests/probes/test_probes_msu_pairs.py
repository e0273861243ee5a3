"""msu_pairs (group scope) on real adapters of one base, against numpy on PEFT's own updates."""

from __future__ import annotations

import numpy as np
import pytest
from peft import LoraConfig, get_peft_model

import builders
import lab
from lab.checkpoints import discover, iter_deltas
from lab.probes.msu_pairs import concat_sum_error, cross_term_error, permuted_cross_term_errors


def _adapter(path, seed, **config):
    config.setdefault("target_modules", ["q_proj", "v_proj"])
    model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(**config))
    builders.randomize_lora(model, seed=seed)
    model.save_pretrained(path)
    return path


def _factors(path):
    return {d.module: d.factors for d in iter_deltas(discover(path)[0])}


def test_concatenation_is_summation_and_averaging_has_cross_terms(tmp_path):
    a = _factors(_adapter(tmp_path / "a", 1, r=4, lora_alpha=8))
    b = _factors(_adapter(tmp_path / "b", 2, r=4, lora_alpha=4, use_rslora=True))
    c = _factors(_adapter(tmp_path / "c", 3, r=7, lora_alpha=3))
    for module in a:
        fs = [a[module], b[module], c[module]]  # heterogeneous ranks and mixed scales
        assert concat_sum_error(fs) < 1e-14
        pair = [a[module], b[module]]
        exact = (pair[0].to_dense() + pair[1].to_dense()) / 2
        s = [f.scale for f in pair]
        linear = sum(np.sqrt(sj / 2) * f.B for sj, f in zip(s, pair)) @ sum(np.sqrt(sj / 2) * f.A for sj, f in zip(s, pair))
        want = np.linalg.norm(linear - exact) / np.linalg.norm(exact)
        assert cross_term_error(pair) == pytest.approx(want, rel=1e-9)
        assert want > 0.1  # independent adapters: the cross terms are of the size of the update
        spread = permuted_cross_term_errors(pair, 8, seed=0)
        assert spread.max() - spread.min() > 1e-3  # the error depends on the arbitrary rank order


def test_msu_pairs_through_analyze_union_and_heterogeneous(tmp_path):
    a = _adapter(tmp_path / "a", 1, r=4, lora_alpha=8)
    b = _adapter(tmp_path / "b", 2, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"])
    c = _adapter(tmp_path / "c", 3, r=6, lora_alpha=8, target_modules=["o_proj", "q_proj"])
    run = lab.analyze([a, b, c], out=tmp_path / "out", probes=["msu_pairs"], options={"msu_pairs": {"permutations": 4}},
                      progress=False)
    t = run.table("msu_pairs").set_index("module")
    q = t.loc["model.layers.0.self_attn.q_proj"]
    assert q.members == "a,b,c" and q.ranks == "4,4,6" and np.isnan(q.cross_term_error) and "ranks differ" in q.note
    assert q.concat_sum_error < 1e-14
    v = t.loc["model.layers.0.self_attn.v_proj"]
    assert v.members == "a,b" and v.cross_term_error > 0.1 and v.permutations == 4
    assert v.cross_term_error_min <= v.cross_term_error_mean <= v.cross_term_error_max
    assert v.fedavg_error_min <= v.fedavg_error_mean <= v.fedavg_error_max and v.fedavg_error > 0.1
    o = t.loc["model.layers.1.self_attn.o_proj"]
    assert o.members == "b,c"
    fa, fb = _factors(a)["model.layers.1.self_attn.v_proj"], _factors(b)["model.layers.1.self_attn.v_proj"]
    mean = (fa.to_dense() + fb.to_dense()) / 2
    assert t.loc["model.layers.1.self_attn.v_proj", "mean_fro_norm"] == pytest.approx(np.linalg.norm(mean), rel=1e-10)


def test_fedavg_and_peft_linear_differ_on_identical_adapters(tmp_path):
    """J copies of one adapter: FedAvg's mean is exact, PEFT's √-weighted linear rule gives J× the update."""
    from lab.kernels.merging import fedavg

    f = next(iter(_factors(_adapter(tmp_path / "a", 1, r=4, lora_alpha=8)).values()))
    copies = [f, f, f]
    assert cross_term_error(copies, "fedavg") < 1e-14
    assert cross_term_error(copies) == pytest.approx(2.0, rel=1e-12)
    g = next(iter(_factors(_adapter(tmp_path / "b", 2, r=4, lora_alpha=4)).values()))
    exact = (f.to_dense() + g.to_dense()) / 2
    want = np.linalg.norm(fedavg([f, g]).to_dense() - exact) / np.linalg.norm(exact)
    assert want == pytest.approx(np.linalg.norm((f.B + g.B) / 2 @ ((f.scale * f.A + g.scale * g.A) / 2) - exact) / np.linalg.norm(exact))
    assert cross_term_error([f, g], "fedavg") == pytest.approx(want, rel=1e-9) and want > 0.1


def test_a_folder_of_adapters_is_the_same_as_its_adapters(tmp_path):
    """``lab analyze FOLDER --probes msu_pairs``: each subfolder holding a checkpoint is one member, in
    natural name order (r4 before r16), the same rows as passing the adapter folders one by one."""
    folder = tmp_path / "adapters"
    paths = [_adapter(folder / name, seed, r=r, lora_alpha=8) for name, seed, r in
             (("lora-r16", 1, 16), ("lora-r4", 2, 4), ("lora-r8", 3, 8))]
    (folder / "notes").mkdir()  # a subfolder without weights is not a member
    (folder / "notes" / "readme.txt").write_text("trained on the docstrings")
    assert [c.name for c in discover(folder)] == ["lora-r4", "lora-r8", "lora-r16"]
    options = {"msu_pairs": {"permutations": 3}}
    by_folder = lab.analyze(folder, out=tmp_path / "out", run="folder", probes=["msu_pairs"], options=options, progress=False)
    by_paths = lab.analyze([paths[1], paths[2], paths[0]], out=tmp_path / "out", run="paths", probes=["msu_pairs"],
                           options=options, progress=False)
    a, b = by_folder.table("msu_pairs"), by_paths.table("msu_pairs")
    assert (a["members"] == "lora-r4,lora-r8,lora-r16").all() and len(a) == 4
    assert a.drop(columns=["run"], errors="ignore").equals(b.drop(columns=["run"], errors="ignore"))
