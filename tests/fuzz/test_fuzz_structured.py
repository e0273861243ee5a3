"""MPS adapters and the structured PEFT types (LoHa, LoKr, VeRA, IA3, AdaLoRA) under the fuzz suite.

* With hypothesis-drawn tensor values (and scale), the update lab reads equals the method's dense
  definition written out in numpy from the saved tensors: LoHa (α/r)·(W1a·W1b) ⊙ (W2a·W2b), LoKr
  (α/r)·kron(W1, W2) (each factor whole or a product), VeRA (λ_b ⊙ B)·(λ_d ⊙ A) from the shared
  projections, IA3 W ⊙ (l − 1) (l scaling W's rows, or its columns for feed-forward modules), MPS
  (α/r)·B·A_MPS with A_MPS[a, i1·d2 + i2] = Σ_c C1[a, i1, c]·C2[c, i2].
* Their files damaged as LoRA's are (any edit of the config's JSON, any safetensors damage): a complete
  run that meets the contract, or one LabError line naming the damaged file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

import builders
from fuzz_helpers import Inputs, analyze_contract, budget, dumps, json_values, numbers, workspace
from fuzz_safetensors import damage, safetensors_mutations
from lab.errors import LabError
from lab.checkpoints import discover, iter_deltas
from lab.finetune.mps import MPS_CONFIG, MPS_WEIGHTS, mps_modules, save_mps, wrap_mps

QV = ["q_proj", "v_proj"]
# name -> (PEFT config class, its arguments)
PEFT_TYPES = {
    "loha": ("LoHaConfig", dict(r=2, alpha=4, target_modules=QV + ["down_proj"])),
    "lokr": ("LoKrConfig", dict(r=2, alpha=4, target_modules=QV + ["down_proj"])),
    "lokr_decomposed": ("LoKrConfig", dict(r=2, alpha=4, decompose_both=True, decompose_factor=4, target_modules=QV)),
    "vera": ("VeraConfig", dict(r=4, target_modules=QV + ["up_proj"], save_projection=True)),
    "ia3": ("IA3Config", dict(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])),
    "adalora": ("AdaLoraConfig", dict(init_r=4, target_r=2, total_step=10, target_modules=QV)),
}


@pytest.fixture(scope="session")
def structured(fuzz_root, llama_base) -> dict[str, Inputs]:
    """PEFT-made adapters of each structured type and an MPS adapter on the tiny LLaMA (randomised, saved)."""
    import peft
    from peft import get_peft_model

    out = {}
    for name, (cls, kwargs) in PEFT_TYPES.items():
        path = fuzz_root / f"structured_{name}"
        torch.manual_seed(0)
        model = get_peft_model(builders.tiny_llama(seed=0), getattr(peft, cls)(**kwargs))
        g = torch.Generator().manual_seed(4)
        with torch.no_grad():
            for _, p in model.named_parameters():
                if p.requires_grad:
                    p.add_(0.1 * torch.randn(p.shape, generator=g))
        model.save_pretrained(path)
        out[name] = Inputs(path, llama_base)
    out["mps"] = Inputs(_mps(fuzz_root / "structured_mps", r=3, chi=2, alpha=6.0, seed=0), llama_base)
    return out


def _mps(path: Path, r: int, chi: int, alpha: float, seed: int) -> Path:
    model = builders.tiny_llama(seed=0)
    torch.manual_seed(seed)
    wrap_mps(model, QV, r, chi, alpha=alpha)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in mps_modules(model).values():
            for p in (m.mps_B, m.mps_C1, m.mps_C2):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    save_mps(model, path, base_path="unused", targets=QV)
    return path


# ---- the dense definitions ------------------------------------------------------------------------


def _own(tensors: dict, module: str) -> dict:
    prefix = f"base_model.model.{module}."
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def _factor(t: dict, name: str) -> np.ndarray:
    return t[name] if name in t else t[f"{name}_a"] @ t[f"{name}_b"]


def loha(t, config, W):
    return config["alpha"] / config["r"] * (t["hada_w1_a"] @ t["hada_w1_b"]) * (t["hada_w2_a"] @ t["hada_w2_b"])


def lokr(t, config, W):
    return config["alpha"] / config["r"] * np.kron(_factor(t, "lokr_w1"), _factor(t, "lokr_w2"))


def vera(t, config, W, shared):
    out, inp = W.shape
    B, A = shared["base_model.vera_B"][:out, :], shared["base_model.vera_A"][:, :inp]
    return (t["vera_lambda_b"][:, None] * B) @ (t["vera_lambda_d"][:, None] * A)


def ia3(t, config, W):
    return W * (t["ia3_l"] - 1.0)  # l is (out, 1), or (1, in) for feed-forward modules


def mps(t, config, W):
    B, C1, C2 = t["mps_B"], t["mps_C1"], t["mps_C2"]
    A = np.einsum("aic,cj->aij", C1, C2).reshape(C1.shape[0], -1)
    return config["alpha"] / config["r"] * B @ A


def definitions(folder: Path, base: Path, kind: str) -> dict[str, np.ndarray]:
    """Module -> ΔW from the saved files by the method's definition, float64."""
    W = {k.removesuffix(".weight"): v.astype(np.float64) for k, v in load_file(base / "model.safetensors").items()}
    if kind == "mps":
        config = json.loads((folder / MPS_CONFIG).read_text())
        raw = {k: v.astype(np.float64) for k, v in load_file(folder / MPS_WEIGHTS).items()}
        return {m: mps({p: raw[f"{m}.{p}"] for p in ("mps_B", "mps_C1", "mps_C2")}, config, W[m]) for m in config["modules"]}
    config = json.loads((folder / "adapter_config.json").read_text())
    raw = {k: v.astype(np.float64) for k, v in load_file(folder / "adapter_model.safetensors").items()}
    modules = {k.removeprefix("base_model.model.").rsplit(".", 1)[0] for k in raw if k.startswith("base_model.model.")}
    out = {}
    for m in sorted(modules):
        t = _own(raw, m)
        definition = {"loha": loha, "lokr": lokr, "ia3": ia3}.get(kind.split("_")[0])
        out[m] = vera(t, config, W[m], raw) if kind == "vera" else definition(t, config, W[m])
    return out


def redraw(folder: Path, kind: str, seed: int, alpha: float) -> None:
    """Every tensor of the adapter redrawn from ``seed`` (same shapes; IA3's l around 1), alpha set."""
    g = np.random.default_rng(seed)
    weights = folder / (MPS_WEIGHTS if kind == "mps" else "adapter_model.safetensors")
    tensors = load_file(weights)
    for key, t in sorted(tensors.items()):
        draw = g.standard_normal(t.shape) * 10.0 ** g.uniform(-2, 1)
        tensors[key] = (1.0 + draw if kind == "ia3" else draw).astype(t.dtype)
    save_file(tensors, str(weights), metadata={"format": "pt"})
    config_file = folder / (MPS_CONFIG if kind == "mps" else "adapter_config.json")
    config = json.loads(config_file.read_text())
    if "alpha" in config:
        config["alpha"] = alpha
    config_file.write_text(json.dumps(config))


@pytest.mark.parametrize("kind", ["loha", "lokr", "lokr_decomposed", "vera", "ia3", "mps"])
@budget(0.05)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), alpha=st.floats(min_value=0.01, max_value=100.0))
def test_update_equals_its_dense_definition(structured, kind, seed, alpha):
    with workspace() as work:
        folder = Path(shutil.copytree(structured[kind].ckpt, work / "adapter"))
        redraw(folder, kind, seed, alpha)
        want = definitions(folder, structured[kind].base, kind)
        got = {d.module: d for d in iter_deltas(discover(folder)[0], structured[kind].base)}
        assert set(got) == set(want)
        for module, d in got.items():
            dense = d.to_dense()
            assert dense.shape == want[module].shape, module
            err = np.linalg.norm(dense - want[module]) / np.linalg.norm(want[module])
            assert err < 1e-9, (module, err)


# ---- damaged files ----------------------------------------------------------------------------------

config_edits = st.one_of(
    st.tuples(st.just("set"), st.integers(min_value=0, max_value=1000), numbers | json_values),  # an existing field
    st.tuples(st.just("set new"), st.text(max_size=10), json_values),
    st.tuples(st.just("delete"), st.integers(min_value=0, max_value=1000)),
    st.tuples(st.just("replace"), json_values),
    st.tuples(st.just("truncate"), st.integers(min_value=0, max_value=10_000)),
)


def edit_config(path: Path, edit: tuple) -> None:
    text = path.read_text()
    if edit[0] == "replace":
        path.write_text(dumps(edit[1]))
        return
    if edit[0] == "truncate":
        path.write_bytes(text.encode()[: edit[1] % (len(text) + 1)])
        return
    config = json.loads(text)
    keys = sorted(config)
    if edit[0] == "set":
        config[keys[edit[1] % len(keys)]] = edit[2]
    elif edit[0] == "set new":
        config[edit[1]] = edit[2]
    else:
        config.pop(keys[edit[1] % len(keys)])
    path.write_text(dumps(config))


@budget(0.35)
@given(kind=st.sampled_from(["loha", "lokr", "vera", "ia3", "adalora", "mps"]), damaged=st.sampled_from(["config", "weights"]),
       edit=config_edits, mutation=safetensors_mutations)
def test_damaged_structured_adapter(structured, kind, damaged, edit, mutation):
    """Any edit of the config or damage to the weights of an MPS or structured PEFT adapter: a complete run
    meeting the contract, or one LabError line naming the damaged file."""
    with workspace() as work:
        folder = Path(shutil.copytree(structured[kind].ckpt, work / "adapter"))
        mps_files = kind == "mps"
        if damaged == "config":
            victim = folder / (MPS_CONFIG if mps_files else "adapter_config.json")
            edit_config(victim, edit)
        else:
            victim = folder / (MPS_WEIGHTS if mps_files else "adapter_model.safetensors")
            damage(victim, mutation)
        analyze_contract(work, Inputs(folder, structured[kind].base), [victim])


@pytest.mark.parametrize("kind,field", [("adalora", "lora_alpha"), ("loha", "alpha"), ("lokr", "alpha")])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_alpha_names_the_config(structured, kind, field, value):
    """Found by this file's damage test (long profile): AdaLoRA's ``lora_alpha: Infinity`` gave a complete
    run whose deltas.scale was inf (LoKr's too). Now one LabError line naming adapter_config.json; except
    where PEFT itself reads the value as a finite scale (AdaLoRA takes r for any lora_alpha that is not > 0,
    NaN included), which then is a complete run under the contract."""
    with workspace() as work:
        folder = Path(shutil.copytree(structured[kind].ckpt, work / "adapter"))
        config = folder / "adapter_config.json"
        config.write_text(dumps({**json.loads(config.read_text()), field: value}))
        result = analyze_contract(work, Inputs(folder, structured[kind].base), [config])
        assert isinstance(result, LabError) or (kind == "adalora" and not value > 0), result
