"""The PEFT-delegated types' updates against each method's definition written out in numpy.

lab reads OFT, BOFT, HRA, MiSS, FourierFT, SHiRA and RandLoRA through PEFT itself
(lab/checkpoints/peft_general.py), and tests/checkpoints/test_peft_general.py compares that with
PEFT's own merge, which is the same code. Here the reference does not go through PEFT: each adapter
is made by PEFT on q_proj (32 × 32) and v_proj (16 × 32) of the tiny LLaMA, moved off its initial
values and saved; the test then reads the saved tensors (safetensors, float64), the
adapter_config.json and the base weight, and writes ΔW out from the method's definition (the
paper's formula, in the form and parametrisation PEFT 0.21's tuner and docs give it) with numpy.
The only thing taken from PEFT's code besides the formula is FourierFT's choice of entry locations
(``torch.randperm`` seeded with the config's ``random_loc_seed``), which the file does not store.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import peft
import pytest
import torch
from peft import get_peft_model
from safetensors.numpy import load_file

import builders
from lab.checkpoints import discover, iter_deltas
from peft_reference import rel_err

QV = ["q_proj", "v_proj"]
# name -> (PEFT config class, its arguments): the delegated types, and their parametrisation variants
ADAPTERS = {
    "oft": ("OFTConfig", dict(r=0, oft_block_size=4)),  # Cayley–Neumann series, PEFT's default
    "oft_cayley": ("OFTConfig", dict(r=0, oft_block_size=8, use_cayley_neumann=False)),
    "boft": ("BOFTConfig", dict(boft_block_size=4)),
    "hra": ("HRAConfig", dict(r=3)),
    "hra_gs": ("HRAConfig", dict(r=3, apply_GS=True)),
    "fourierft": ("FourierFTConfig", dict(n_frequency=40, scaling=10.0)),
    "miss": ("MissConfig", dict(r=4)),
    "miss_uneven": ("MissConfig", dict(r=5)),  # 32 = 6·5 + 2: the last 2 columns take part of the block
    "miss_mini": ("MissConfig", dict(r=4, init_weights="mini", mini_r=8)),
    "miss_bat": ("MissConfig", dict(r=4, init_weights="bat")),
    "shira": ("ShiraConfig", dict(r=2, random_seed=3)),
    "randlora": ("RandLoraConfig", dict(r=4)),
}


@pytest.fixture(scope="module")
def made(tmp_path_factory, llama_base):
    """name -> (adapter folder, saved tensors, adapter config, base weights), built on first use."""
    root = tmp_path_factory.mktemp("definitions")
    base = load_file(llama_base / "model.safetensors")
    cache = {}

    def get(name: str):
        if name not in cache:
            cls, kwargs = ADAPTERS[name]
            torch.manual_seed(0)
            model = get_peft_model(builders.tiny_llama(seed=0), getattr(peft, cls)(target_modules=QV, **kwargs))
            g = torch.Generator().manual_seed(7)
            with torch.no_grad():  # most types start at ΔW = 0
                for _, p in model.named_parameters():
                    if p.requires_grad:
                        p.add_(0.1 * torch.randn(p.shape, generator=g))
            model.save_pretrained(root / name)
            tensors = {k: v.astype(np.float64) if v.dtype.kind == "f" else v
                       for k, v in load_file(root / name / "adapter_model.safetensors").items()}
            config = json.loads((root / name / "adapter_config.json").read_text())
            cache[name] = (root / name, tensors, config, {k: v.astype(np.float64) for k, v in base.items()})
        return cache[name]

    return get


def _skew(upper: np.ndarray, b: int) -> np.ndarray:
    """b × b skew-symmetric matrix from its strict upper triangle, row by row."""
    q = np.zeros((b, b))
    q[np.triu_indices(b, 1)] = upper
    return q - q.T


def _block_diag(blocks) -> np.ndarray:
    n = sum(x.shape[0] for x in blocks)
    out, at = np.zeros((n, n)), 0
    for x in blocks:
        out[at:at + x.shape[0], at:at + x.shape[0]] = x
        at += x.shape[0]
    return out


def oft(t, config, W):
    """OFT (Qiu et al. 2023): W' = W·Rᵀ, R = diag(R_1 … R_k) acting on the input in blocks of b, each R_i
    the Cayley transform of a skew-symmetric Q_i stored by its upper triangle. PEFT's default is OFTv2's
    Cayley–Neumann series (I + Q)·Σ_{j=0}^{n−2} Q^j (n = num_cayley_neumann_terms), else the exact
    transform, which PEFT's solve writes as (I − Q)(I + Q)⁻¹."""
    b, n = config["oft_block_size"], config["num_cayley_neumann_terms"]
    rotations = []
    for upper in t["oft_R.weight"]:
        q, eye = _skew(upper, b), np.eye(b)
        if config["use_cayley_neumann"]:
            rotations.append((eye + q) @ sum(np.linalg.matrix_power(q, j) for j in range(n - 1)))
        else:
            rotations.append((eye - q) @ np.linalg.inv(eye + q))
    return W @ _block_diag(rotations).T - W


def boft(t, config, W):
    """BOFT (Liu et al. 2024) with one butterfly factor (what PEFT builds without its CUDA kernel): OFT's
    exact Cayley transform of the skew part ½(R_i − R_iᵀ) of each stored block, then a magnitude s per
    output row: W' = (W·Rᵀ) ⊙ s."""
    blocks = t["boft_R"]
    assert blocks.shape[0] == 1, "the definition below is the one-factor case"
    rotations = []
    for r in blocks[0]:
        s, eye = 0.5 * (r - r.T), np.eye(r.shape[0])
        rotations.append((eye - s) @ np.linalg.inv(eye + s))
    return (W @ _block_diag(rotations).T) * t["boft_s"] - W


def hra(t, config, W):
    """HRA (Yuan et al. 2024): W' = W·H, H = Π_i (I − 2 u_i u_iᵀ) over the normalised columns of U; with
    apply_GS the u_i are orthonormalised first and the product is I − 2 Q Qᵀ (Q from U's QR, any signs)."""
    u = t["hra_u"]
    if config["apply_GS"]:
        q, _ = np.linalg.qr(u)
        return W @ (np.eye(u.shape[0]) - 2 * q @ q.T) - W
    h = np.eye(u.shape[0])
    for col in (u / np.linalg.norm(u, axis=0)).T:
        h = h @ (np.eye(u.shape[0]) - 2 * np.outer(col, col))
    return W @ h - W


def fourierft(t, config, W):
    """FourierFT (Gao et al. 2024): ΔW = α·Re(IDFT2(F)), F zero except the n learned coefficients at
    entries drawn once from a seeded random permutation of the m·n positions."""
    m, n = W.shape
    picked = torch.randperm(m * n, generator=torch.Generator().manual_seed(config["random_loc_seed"]))
    picked = picked[: config["n_frequency"]].numpy()
    spectrum = np.zeros((m, n))
    spectrum[picked // n, picked % n] = t["fourierft_spectrum"]
    return config["scaling"] * np.fft.ifft2(spectrum).real


def miss(t, config, W):
    """MiSS (Kang & Yin 2024): one shared r-wide block D (r × out) added to every r-column shard of W,
    so ΔW[o, i] = D[i mod r, o]; "mini" repeats an r × mini_r block along the outputs; "bat" makes the
    shard (a, c) of W' equal W_ac·D_a + D_a + W_ac with one r × r block D_a per output shard."""
    d = t["miss_block"]
    out, inp = W.shape
    if config["init_weights"] == "bat":
        r = d.shape[-1]
        delta = np.zeros_like(W)
        for a in range(out // r):
            for c in range(inp // r):
                block = W[a * r:(a + 1) * r, c * r:(c + 1) * r]
                delta[a * r:(a + 1) * r, c * r:(c + 1) * r] = block @ d[a] + d[a]
        return delta
    if config["init_weights"] == "mini":
        d = d[:, np.arange(out) % config["mini_r"]]
    return d.T[:, np.arange(inp) % d.shape[0]]


def shira(t, config, W):
    """SHiRA (Bhardwaj et al. 2024): a sparse ΔW, the stored values at the stored (row, column) indices
    (scale 1 unless set at inference)."""
    delta = np.zeros_like(W)
    rows, cols = t["shira_indices"].astype(np.int64)
    np.add.at(delta, (rows, cols), t["shira_weight"])
    return delta


def randlora(t, config, W):
    """RandLoRA (Albert et al. 2025): ΔW = (α/r)·Σ_j b_j·(λ_j a_j ⊙ γ_{n(j)}) over N = ⌈min(m, n)/r⌉ bases
    of rank r from the shared frozen random B and A (one A, scaled per basis n by γ_n and per rank by λ),
    on the smaller side; PEFT pairs B's column (n, k) flattened basis-major with the scaled A's row (k, n)
    flattened rank-major, and the test pairs them the same way."""
    out, inp = W.shape
    lo, hi = min(out, inp), max(out, inp)
    r = config["r"]
    nb = -(-lo // r)
    a = t["base_model.randlora_A"][:, :nb, :lo]  # (r, 1 or N, lo)
    b = t["base_model.randlora_B"][:hi, :nb, :]  # (hi, N, r)
    lam, gam = t["randlora_lambda"], t["randlora_gamma"]  # (r, N), (N, lo)
    scaled_a = np.empty((r, nb, lo))
    for k in range(r):
        for n in range(nb):
            scaled_a[k, n] = lam[k, n] * a[k, min(n, a.shape[1] - 1)] * gam[n]
    pairs = b.reshape(hi, nb * r) @ scaled_a.reshape(r * nb, lo)  # (hi, lo)
    delta = pairs if lo == inp else pairs.T
    return config["randlora_alpha"] / r * delta


# relative agreement: float64 throughout, except FourierFT, whose get_delta_weight builds the spectrum
# and takes the inverse FFT in float32 (``torch.zeros(out, in)``, ``spectrum.float()``) whatever the
# layer's dtype: lab's float64 read of it carries float32 rounding
TOLERANCE = {"fourierft": 1e-6}
DEFINITIONS = {"oft": oft, "boft": boft, "hra": hra, "fourierft": fourierft, "miss": miss, "shira": shira,
               "randlora": randlora}


def _module_tensors(tensors: dict, module: str) -> dict:
    prefix = f"base_model.model.{module}."
    own = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
    return {**own, **{k: v for k, v in tensors.items() if not k.startswith("base_model.model.")}}


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_update_equals_the_methods_definition(made, llama_base, name):
    folder, tensors, config, base = made(name)
    definition = DEFINITIONS[name.split("_")[0]]
    deltas = {d.module: d for d in iter_deltas(discover(folder)[0], llama_base)}
    assert set(deltas) == {f"model.layers.{i}.self_attn.{m}" for i in range(2) for m in QV}
    for module, d in deltas.items():
        W = base[f"{module}.weight"]
        want = definition(_module_tensors(tensors, module), config, W)
        assert want.shape == W.shape == d.shape
        assert np.linalg.norm(want) > 1e-2 * np.linalg.norm(W), f"{module}: the adapter should move W"
        assert rel_err(d.to_dense(), want) < TOLERANCE.get(name, 1e-9), module


def test_the_definitions_can_tell_a_wrong_update():
    """Each definition, fed a transposed rotation or a shifted index, gives a different ΔW: the
    comparison above is not satisfied by anything of the right shape."""
    g = np.random.default_rng(0)
    W = g.standard_normal((16, 32))
    upper = 0.1 * g.standard_normal((4, 28))
    right = oft({"oft_R.weight": upper}, {"oft_block_size": 8, "use_cayley_neumann": False, "num_cayley_neumann_terms": 5}, W)
    flipped = oft({"oft_R.weight": -upper}, {"oft_block_size": 8, "use_cayley_neumann": False, "num_cayley_neumann_terms": 5}, W)
    assert rel_err(flipped, right) > 1e-2  # Rᵀ instead of R
    d = g.standard_normal((4, 16))
    shard = miss({"miss_block": d}, {"init_weights": True}, W)
    assert rel_err(np.roll(shard, 1, axis=1), shard) > 1e-2


def test_the_neumann_series_is_the_exact_rotation_to_its_order():
    """The two OFT forms above agree to the series' truncation: ‖(I+Q)Σ_{j<n−1}Q^j − (I+Q)(I−Q)⁻¹‖ = O(‖Q‖ⁿ⁻¹),
    which is (I − Q)(I + Q)⁻¹ for −Q: PEFT's two settings rotate by R and its transpose for the same weights."""
    g = np.random.default_rng(1)
    q = _skew(0.01 * g.standard_normal(6), 4)
    eye = np.eye(4)
    exact = (eye + q) @ np.linalg.inv(eye - q)
    for n in (3, 5, 7):
        series = (eye + q) @ sum(np.linalg.matrix_power(q, j) for j in range(n - 1))
        assert np.linalg.norm(series - exact) < 10 * np.linalg.norm(q, 2) ** (n - 1)
    np.testing.assert_allclose(exact.T, (eye - q) @ np.linalg.inv(eye + q), atol=1e-14)
