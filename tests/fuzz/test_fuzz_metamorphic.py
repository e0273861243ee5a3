"""Metamorphic properties on hypothesis-drawn valid inputs: two runs whose numbers must relate exactly.

Where the damage tests ask "a finite run or a one-line error", these ask for the numbers:

* scaling ``lora_alpha`` by c scales ‖ΔW‖_F, the spectral norm and every σ by c and the scale s by
  c, and leaves every other number (entropies, ranks, energies) unchanged;
* permuting the ranks of a LoRA (B's columns with A's rows, the same permutation) changes no row;
* transposing a dense update keeps its spectrum and the entropy at the row|column cut, and reversing
  its site chain (the transpose with each side's digits reversed) mirrors the whole profile.

The adapters are written directly as PEFT files (adapter_config.json from a PEFT-made template, factors
drawn from a seed, rank and scale drawn), then analysed by ``lab.analyze`` with the default probes
and checked against the contract, empty values included (:func:`fuzz_helpers.check_run`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

import builders
import lab
from fuzz_helpers import RUN, budget, check_run, workspace
from lab.probes.entanglement import entanglement_profile
from lab.probes.spectra import spectrum
from lab.kernels.tensorize import Sites, sites

# columns that scale with the update (deltas' scale too: s = α/r or α/√r); every other number is invariant
SCALES_WITH_ALPHA = {("deltas", "scale"), ("deltas", "fro_norm"), ("spectra", "fro_norm"), ("spectra", "spectral_norm"),
                     ("singular_values", "sigma")}
KEYS = ["checkpoint", "module", "source", "cut", "index"]


@pytest.fixture(scope="session")
def lora_template(fuzz_root) -> Path:
    """A PEFT LoRA adapter on q_proj (32×32), v_proj (16×32) and down_proj (32×48) of the tiny LLaMA."""
    from peft import LoraConfig, get_peft_model

    path = fuzz_root / "metamorphic_template"
    if not path.exists():
        model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj", "down_proj"]))
        model.save_pretrained(path)
    return path


def _shapes(template: Path) -> dict[str, tuple[int, int]]:
    """Module prefix in the file -> (out, in)."""
    tensors = load_file(template / "adapter_model.safetensors")
    out = {}
    for key, t in tensors.items():
        if key.endswith("lora_A.weight"):
            prefix = key.removesuffix("lora_A.weight")
            out[prefix] = (tensors[prefix + "lora_B.weight"].shape[0], t.shape[1])
    return out


def draw_factors(template: Path, r: int, seed: int, spread: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Gaussian B (out × r), A (r × in) per module, the ranks' sizes spread over 10^±spread."""
    g = np.random.default_rng(seed)
    factors = {}
    for prefix, (rows, cols) in sorted(_shapes(template).items()):
        size = 10.0 ** g.uniform(-spread, spread, r)
        factors[prefix] = (g.standard_normal((rows, r)) * size, g.standard_normal((r, cols)))
    return factors


def write_lora(folder: Path, template: Path, factors: dict, alpha: float, rslora: bool) -> Path:
    """A LoRA adapter folder: the template's config with r, lora_alpha and use_rslora set, these factors (float32)."""
    folder.mkdir(parents=True)
    r = next(iter(factors.values()))[0].shape[1]
    config = json.loads((template / "adapter_config.json").read_text())
    config.update(r=r, lora_alpha=alpha, use_rslora=rslora)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    tensors = {}
    for prefix, (B, A) in factors.items():
        tensors[prefix + "lora_B.weight"] = np.ascontiguousarray(B, dtype=np.float32)
        tensors[prefix + "lora_A.weight"] = np.ascontiguousarray(A, dtype=np.float32)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


def analyse(work: Path, folder: Path) -> dict[str, pd.DataFrame]:
    """The default probes on ``folder`` (no base), checked against the contract; its tables sorted by their keys."""
    run = lab.analyze(folder, out=work / "results", run=RUN, progress=False)
    check_run(run)
    out = {}
    for name in run.tables():
        frame = run.table(name)
        keys = [k for k in KEYS if k in frame.columns]
        out[name] = frame.sort_values(keys).reset_index(drop=True)
    return out


def assert_related(a: dict, b: dict, factor: dict[tuple[str, str], float]) -> None:
    """Every table of ``b`` equals ``a``'s, numeric column (t, c) times ``factor.get((t, c), 1)``."""
    assert sorted(a) == sorted(b)
    for name in a:
        fa, fb = a[name], b[name]
        assert list(fa.columns) == list(fb.columns) and len(fa) == len(fb), name
        for column in fa.columns:
            x, y = fa[column], fb[column]
            if x.dtype.kind in "fiu" or str(x.dtype).startswith(("Int", "Float")):
                x = x.to_numpy(dtype=float, na_value=np.nan) * factor.get((name, column), 1.0)
                y = y.to_numpy(dtype=float, na_value=np.nan)
                scale = np.nanmax(np.abs(x), initial=0.0)
                np.testing.assert_allclose(y, x, rtol=1e-7, atol=1e-9 * scale + 1e-12, err_msg=f"{name}.{column}")
            else:
                assert x.astype(str).tolist() == y.astype(str).tolist(), f"{name}.{column}"


ranks = st.integers(min_value=1, max_value=6)
seeds = st.integers(min_value=0, max_value=2**32 - 1)
spreads = st.sampled_from([0.0, 0.5, 2.0])
alphas = st.floats(min_value=0.05, max_value=64.0)
factors_c = st.floats(min_value=1e-3, max_value=1e3).filter(lambda c: abs(c - 1) > 1e-6)


@budget(0.1)
@given(r=ranks, seed=seeds, spread=spreads, alpha=alphas, c=factors_c, rslora=st.booleans())
def test_scaling_lora_alpha_scales_norms_and_keeps_entropies(lora_template, r, seed, spread, alpha, c, rslora):
    factors = draw_factors(lora_template, r, seed, spread)
    with workspace() as one, workspace() as two:
        a = analyse(one, write_lora(one / "adapter", lora_template, factors, alpha, rslora))
        b = analyse(two, write_lora(two / "adapter", lora_template, factors, c * alpha, rslora))
    assert_related(a, b, dict.fromkeys(SCALES_WITH_ALPHA, c))


@budget(0.1)
@given(r=st.integers(min_value=2, max_value=6), seed=seeds, spread=spreads, alpha=alphas, data=st.data())
def test_permuting_ranks_changes_no_row(lora_template, r, seed, spread, alpha, data):
    factors = draw_factors(lora_template, r, seed, spread)
    perm = np.array(data.draw(st.permutations(range(r))))
    permuted = {k: (B[:, perm], A[perm, :]) for k, (B, A) in factors.items()}
    with workspace() as one, workspace() as two:
        a = analyse(one, write_lora(one / "adapter", lora_template, factors, alpha, False))
        b = analyse(two, write_lora(two / "adapter", lora_template, permuted, alpha, False))
    assert_related(a, b, {})


def reverse_chain(matrix: np.ndarray) -> tuple[np.ndarray, Sites]:
    """ψ with its site chain reversed, as a cols × rows matrix (Mᵀ with each side's digits reversed),
    and that reversed chain (lab's own chain of a cols × rows matrix orders each side ascending)."""
    chain = sites(*matrix.shape)
    tensor = matrix.reshape(chain.dims)
    flipped = tensor.transpose(tuple(reversed(range(len(chain.dims))))).reshape(matrix.shape[1], matrix.shape[0])
    return flipped, Sites(dims=tuple(reversed(chain.dims)), row_sites=len(chain.dims) - chain.row_sites)


sides = st.sampled_from([2, 3, 4, 6, 8, 9, 10, 12, 15, 16, 18, 20, 24, 30, 32])


@budget(0.25)
@given(rows=sides, cols=sides, rank=st.integers(min_value=1, max_value=8), seed=seeds)
def test_transposing_a_dense_update_mirrors_the_profile(rows, cols, rank, seed):
    """Mᵀ has M's spectrum and M's entropy at the row|column cut; M with its chain reversed (Mᵀ up to
    permutations of its rows and of its columns, on the reversed chain) has M's whole profile read
    backwards. Mᵀ on its own chain does not mirror the other cuts: a cut of that chain keeps a block of
    column digits on the left, M's cuts keep row digits (one 8×4 matrix: entropies 0.60, 0.89, 0.74,
    0.61; its transpose's, read backwards, 0.59, 1.02, 0.74, 0.14)."""
    g = np.random.default_rng(seed)
    matrix = g.standard_normal((rows, rank)) @ g.standard_normal((rank, cols)) + 1e-3 * g.standard_normal((rows, cols))
    profile, mirrored = entanglement_profile(matrix), entanglement_profile(*reverse_chain(matrix))
    np.testing.assert_allclose(mirrored.entropy, profile.entropy[::-1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(mirrored.renyi2, profile.renyi2[::-1], rtol=1e-9, atol=1e-12)
    transposed = entanglement_profile(matrix.T)
    k, kt = sites(rows, cols).row_sites, sites(cols, rows).row_sites
    assert transposed.entropy[kt - 1] == pytest.approx(profile.entropy[k - 1], rel=1e-9, abs=1e-12)
    a, b = spectrum(matrix), spectrum(matrix.T)
    np.testing.assert_allclose(b.sigma, a.sigma, rtol=1e-9, atol=1e-12 * a.sigma[0])
