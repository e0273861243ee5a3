"""LyCORIS files (LoHa, LoKr, LoCon's Tucker core, full diff, DoRA) written from their definitions: lab's
updates equal the dense formulas computed here with numpy (LyCORIS's einsum and 4-D kron), and stay
structured (Khatri–Rao factors, Kron) so the exact fast paths apply."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from lab.checkpoints import discover, iter_deltas
from lab.deltas import Factors, Kron
from lab.errors import FormatError, ShapeError

RNG = np.random.default_rng(7)


def _t(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _write(path: Path, tensors: dict, metadata: dict | None = None) -> Path:
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def _deltas(path, base=None) -> dict:
    return {d.module: d for d in iter_deltas(discover(path)[0], base)}


def _rel(got, want) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def _tucker(t, wa, wb):
    """LyCORIS's rebuild_tucker: einsum('i j ..., i p, j r -> p r ...')."""
    return np.einsum("ij...,ip,jr->pr...", _f64(t), _f64(wa), _f64(wb))


def test_loha_linear_conv_and_tucker_equal_the_hadamard_formula(tmp_path):
    r, alpha = 2, 3.0
    lin = {k: _t(*s) for k, s in (("hada_w1_a", (12, r)), ("hada_w1_b", (r, 10)), ("hada_w2_a", (12, r)), ("hada_w2_b", (r, 10)))}
    conv = {k: _t(*s) for k, s in (("hada_w1_a", (8, r)), ("hada_w1_b", (r, 6 * 9)), ("hada_w2_a", (8, r)), ("hada_w2_b", (r, 6 * 9)))}
    tuck = {"hada_t1": _t(r, r, 3, 3), "hada_w1_a": _t(r, 8), "hada_w1_b": _t(r, 6),
            "hada_t2": _t(r, r, 3, 3), "hada_w2_a": _t(r, 8), "hada_w2_b": _t(r, 6)}
    tensors = {}
    for name, parts in (("lora_unet_a_to_q", lin), ("lora_unet_b_conv1", conv), ("lora_unet_c_conv2", tuck)):
        tensors.update({f"{name}.{k}": v for k, v in parts.items()})
        tensors[f"{name}.alpha"] = np.array(alpha, dtype=np.float32)
    d = _deltas(_write(tmp_path / "loha.safetensors", tensors))
    s = alpha / r
    want = (_f64(lin["hada_w1_a"]) @ _f64(lin["hada_w1_b"])) * (_f64(lin["hada_w2_a"]) @ _f64(lin["hada_w2_b"])) * s
    assert isinstance(d["lora_unet_a_to_q"].matrix, Factors) and d["lora_unet_a_to_q"].rank_bound == r * r
    assert _rel(d["lora_unet_a_to_q"].to_dense(), want) < 1e-12
    want = (_f64(conv["hada_w1_a"]) @ _f64(conv["hada_w1_b"])) * (_f64(conv["hada_w2_a"]) @ _f64(conv["hada_w2_b"])) * s
    assert d["lora_unet_b_conv1"].shape == (8, 54) and d["lora_unet_b_conv1"].role == "conv"
    assert _rel(d["lora_unet_b_conv1"].to_dense(), want) < 1e-12
    # LyCORIS's HadaWeightTucker: einsum('i j ..., j r, i p -> p r ...', t, w_b, w_a) per operand, then ⊙ and scale
    w4 = (np.einsum("ij...,jr,ip->pr...", _f64(tuck["hada_t1"]), _f64(tuck["hada_w1_b"]), _f64(tuck["hada_w1_a"]))
          * np.einsum("ij...,jr,ip->pr...", _f64(tuck["hada_t2"]), _f64(tuck["hada_w2_b"]), _f64(tuck["hada_w2_a"])) * s)
    assert w4.shape == (8, 6, 3, 3)
    got = d["lora_unet_c_conv2"]
    assert isinstance(got.matrix, Factors) and got.shape == (8, 54)
    assert _rel(got.to_dense(), w4.reshape(8, -1)) < 1e-12


def test_lokr_forms_equal_the_kronecker_formula(tmp_path):
    alpha = 4.0
    # W1 whole, W2 decomposed (r = 2: scale alpha/2)
    a = {"lokr_w1": _t(2, 3), "lokr_w2_a": _t(6, 2), "lokr_w2_b": _t(2, 4)}
    # W1 decomposed (r = 3 from lokr_w1_b), W2 whole
    b = {"lokr_w1_a": _t(4, 3), "lokr_w1_b": _t(3, 4), "lokr_w2": _t(3, 2)}
    # both whole: LyCORIS sets the scale to 1 whatever alpha says
    c = {"lokr_w1": _t(2, 2), "lokr_w2": _t(5, 3)}
    # a 3×3 convolution: W2 whole and 4-D
    conv = {"lokr_w1": _t(2, 2), "lokr_w2": _t(4, 3, 3, 3)}
    # a 3×3 convolution with W2 decomposed as LyCORIS stores it: c × r and r × (d·kh·kw)
    conv2 = {"lokr_w1": _t(2, 2), "lokr_w2_a": _t(4, 2), "lokr_w2_b": _t(2, 3 * 9)}
    # Tucker W2
    tuck = {"lokr_w1": _t(2, 2), "lokr_t2": _t(2, 2, 3, 3), "lokr_w2_a": _t(2, 4), "lokr_w2_b": _t(2, 3)}
    mods = {"lora_te_l_a_q_proj": a, "lora_te_l_b_k_proj": b, "lora_te_l_c_v_proj": c,
            "lora_unet_x_conv1": conv, "lora_unet_y_conv2": conv2, "lora_unet_z_conv_shortcut": tuck}
    tensors = {f"{m}.{k}": v for m, parts in mods.items() for k, v in parts.items()}
    tensors.update({f"{m}.alpha": np.array(alpha, dtype=np.float32) for m in mods})
    d = _deltas(_write(tmp_path / "lokr.safetensors", tensors))
    for m in mods:
        assert isinstance(d[m].matrix, Kron), m
    assert _rel(d["lora_te_l_a_q_proj"].to_dense(), np.kron(_f64(a["lokr_w1"]), _f64(a["lokr_w2_a"]) @ _f64(a["lokr_w2_b"])) * alpha / 2) < 1e-12
    assert _rel(d["lora_te_l_b_k_proj"].to_dense(), np.kron(_f64(b["lokr_w1_a"]) @ _f64(b["lokr_w1_b"]), _f64(b["lokr_w2"])) * alpha / 3) < 1e-12
    assert _rel(d["lora_te_l_c_v_proj"].to_dense(), np.kron(_f64(c["lokr_w1"]), _f64(c["lokr_w2"]))) < 1e-12
    # LyCORIS's make_kron for a convolution: kron(w1[:, :, None, None], w2) (4-D), then the (out, in·kh·kw) matrix
    w4 = np.kron(_f64(conv["lokr_w1"])[:, :, None, None], _f64(conv["lokr_w2"]))
    assert w4.shape == (8, 6, 3, 3)
    assert _rel(d["lora_unet_x_conv1"].to_dense(), w4.reshape(8, -1)) < 1e-12  # W1, W2 whole: scale 1
    w2 = (_f64(conv2["lokr_w2_a"]) @ _f64(conv2["lokr_w2_b"])).reshape(4, 3, 3, 3)
    w4 = np.kron(_f64(conv2["lokr_w1"])[:, :, None, None], w2) * alpha / 2
    assert _rel(d["lora_unet_y_conv2"].to_dense(), w4.reshape(8, -1)) < 1e-12
    w2 = _tucker(tuck["lokr_t2"], tuck["lokr_w2_a"], tuck["lokr_w2_b"])
    w4 = np.kron(_f64(tuck["lokr_w1"])[:, :, None, None], w2) * alpha / 2
    assert _rel(d["lora_unet_z_conv_shortcut"].to_dense(), w4.reshape(8, -1)) < 1e-12
    # the Kron's singular values are products of the factors': its norm is the dense one's
    dense = d["lora_unet_z_conv_shortcut"].to_dense()
    assert d["lora_unet_z_conv_shortcut"].fro_norm() == pytest.approx(np.linalg.norm(dense), rel=1e-12)


def test_locon_tucker_full_diff_and_dora_with_a_base(tmp_path):
    r, alpha = 3, 1.5
    up, mid, down = _t(8, r, 1, 1), _t(r, r, 3, 3), _t(r, 5, 1, 1)
    diff = _t(8, 5, 3, 3)
    lin_up, lin_down, ds = _t(6, r), _t(r, 7), np.abs(_t(1, 7)) + 0.5  # LyCORIS: one scale per input column
    tensors = {"lora_unet_m_conv1.lora_up.weight": up, "lora_unet_m_conv1.lora_mid.weight": mid,
               "lora_unet_m_conv1.lora_down.weight": down, "lora_unet_m_conv1.alpha": np.array(alpha, np.float32),
               "lora_unet_n_conv2.diff": diff,
               "lora_unet_o_to_k.lora_up.weight": lin_up, "lora_unet_o_to_k.lora_down.weight": lin_down,
               "lora_unet_o_to_k.alpha": np.array(alpha, np.float32), "lora_unet_o_to_k.dora_scale": ds}
    path = _write(tmp_path / "locon.safetensors", tensors)
    d = _deltas(path)
    # A1111's rebuild_cp_decomposition: einsum('n m k l, i n, m j -> i j k l', mid, up, down)
    w4 = np.einsum("nmkl,in,mj->ijkl", _f64(mid), _f64(up).reshape(8, r), _f64(down).reshape(r, 5)) * alpha / r
    assert isinstance(d["lora_unet_m_conv1"].matrix, Factors) and d["lora_unet_m_conv1"].rank_bound == r
    assert _rel(d["lora_unet_m_conv1"].to_dense(), w4.reshape(8, -1)) < 1e-12
    assert d["lora_unet_n_conv2"].kind == "full" and _rel(d["lora_unet_n_conv2"].to_dense(), _f64(diff).reshape(8, -1)) < 1e-15
    assert d["lora_unet_o_to_k"].kind == "dora" and "low-rank part only" in d["lora_unet_o_to_k"].note
    # with a diffusers base folder: DoRA's effective update W' − W, W' = dora_scale·(W + ΔW)/‖W + ΔW‖ per input column
    base = tmp_path / "base"
    (base / "unet").mkdir(parents=True)
    (base / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DConditionModel"]}))
    (base / "unet" / "config.json").write_text("{}")
    W = {"m.conv1.weight": _t(8, 5, 3, 3), "n.conv2.weight": _t(8, 5, 3, 3), "o.to_k.weight": _t(6, 7)}
    _write(base / "unet" / "diffusion_pytorch_model.safetensors", W)
    got = _deltas(path, base)
    assert set(got) == {"unet.m.conv1", "unet.n.conv2", "unet.o.to_k"}
    V = _f64(W["o.to_k.weight"]) + _f64(lin_up) @ _f64(lin_down) * alpha / r
    want = _f64(ds) * V / np.linalg.norm(V, axis=0, keepdims=True) - _f64(W["o.to_k.weight"])
    assert _rel(got["unet.o.to_k"].to_dense(), want) < 1e-12
    np.testing.assert_array_equal(got["unet.m.conv1"].base, _f64(W["m.conv1.weight"]).reshape(8, -1))


def test_bad_lycoris_files_fail_naming_file_and_key(tmp_path):
    good = {"lora_unet_a_to_q.hada_w1_a": _t(4, 2), "lora_unet_a_to_q.hada_w1_b": _t(2, 5),
            "lora_unet_a_to_q.hada_w2_a": _t(4, 2), "lora_unet_a_to_q.hada_w2_b": _t(2, 5)}
    bad = dict(good, **{"lora_unet_a_to_q.hada_w1_b": _t(3, 5)})
    path = _write(tmp_path / "rank.safetensors", bad)
    with pytest.raises(ShapeError, match=r"rank\.safetensors: 'lora_unet_a_to_q\.hada_w1_a' \[4, 2\] has rank 2 but 'lora_unet_a_to_q\.hada_w1_b'"):
        discover(path)
    path = _write(tmp_path / "half.safetensors", {"lora_unet_b_to_v.lokr_w1": _t(2, 2), "lora_unet_b_to_v.lokr_w2_a": _t(3, 2)})
    with pytest.raises(FormatError, match=r"half\.safetensors: LoKr module 'lora_unet_b_to_v' needs lokr_w2, or lokr_w2_a and lokr_w2_b"):
        discover(path)
    path = _write(tmp_path / "oft.safetensors", {"lora_unet_c_to_v.oft_blocks": _t(2, 3, 3)})
    with pytest.raises(FormatError, match=r"oft\.safetensors: tensor 'lora_unet_c_to_v\.oft_blocks' is not a kohya/LyCORIS tensor"):
        discover(path)
    done = subprocess.run([str(Path(sys.executable).with_name("lab")), "analyze", str(tmp_path / "rank.safetensors"),
                           "--out", str(tmp_path / "res")], capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1
    assert "rank.safetensors" in lines[0] and "lora_unet_a_to_q.hada_w1_b" in lines[0]
    assert not (tmp_path / "res" / "rank").exists()


def test_loha_conv_dora_per_input_channel(tmp_path):
    """LyCORIS's LoHa DoRA on a 3×3 convolution: dora_scale 1 × in × 1 × 1, the norm of W + ΔW over (out, kh, kw)
    per input channel (LyCORIS's apply_weight_decompose), W' − W written out here with numpy."""
    r, alpha = 2, 2.0
    parts = {"hada_w1_a": _t(6, r), "hada_w1_b": _t(r, 4 * 9), "hada_w2_a": _t(6, r), "hada_w2_b": _t(r, 4 * 9),
             "alpha": np.array(alpha, np.float32), "dora_scale": np.abs(_t(1, 4, 1, 1)) + 0.5}
    path = _write(tmp_path / "loha_dora.safetensors", {f"lora_unet_a_conv1.{k}": v for k, v in parts.items()})
    base = tmp_path / "base"
    (base / "unet").mkdir(parents=True)
    (base / "model_index.json").write_text("{}")
    (base / "unet" / "config.json").write_text("{}")
    W = _t(6, 4, 3, 3)
    _write(base / "unet" / "diffusion_pytorch_model.safetensors", {"a.conv1.weight": W})
    (d,) = _deltas(path, base).values()
    delta = ((_f64(parts["hada_w1_a"]) @ _f64(parts["hada_w1_b"])) * (_f64(parts["hada_w2_a"]) @ _f64(parts["hada_w2_b"]))
             * alpha / r).reshape(6, 4, 3, 3)
    V = _f64(W) + delta
    norm = np.linalg.norm(V.transpose(1, 0, 2, 3).reshape(4, -1), axis=1).reshape(1, 4, 1, 1)
    want = _f64(parts["dora_scale"]) * V / norm - _f64(W)
    assert d.kind == "dora" and _rel(d.to_dense(), want.reshape(6, -1)) < 1e-12
