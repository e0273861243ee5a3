"""kohya and diffusers LoRA files of a tiny Stable Diffusion (UNet2DConditionModel and a CLIP text
encoder built from small configs): LoRAs made with PEFT, converted to kohya's layout by diffusers' own
``convert_state_dict_to_kohya`` and saved in diffusers' format by its own ``save_lora_weights``; lab's
updates equal PEFT's ``get_delta_weight`` on the original modules (3×3 convolutions included)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import UNet2DConditionModel  # noqa: E402
from diffusers.loaders import StableDiffusionLoraLoaderMixin  # noqa: E402
from diffusers.utils.state_dict_utils import StateDictType, convert_state_dict_to_diffusers, convert_state_dict_to_kohya  # noqa: E402
from peft import LoraConfig, inject_adapter_in_model  # noqa: E402
from peft.tuners.lora import LoraLayer  # noqa: E402
from peft.utils import get_peft_model_state_dict  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

from lab.checkpoints import discover, iter_deltas  # noqa: E402
from lab.errors import FormatError, MatchError  # noqa: E402

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "conv1", "conv2", "ff.net.0.proj", "ff.net.2",
                "time_emb_proj"]
TE_TARGETS = ["q_proj", "v_proj", "fc1"]
R = 4


def _models(seed: int = 0):
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4)
    te = CLIPTextModel(CLIPTextConfig(vocab_size=40, bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                                      num_attention_heads=2, max_position_embeddings=16))
    return unet.eval(), te.eval()


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    """A diffusers model folder (unet/, text_encoder/), and the two models with a LoRA of alpha 2r attached."""
    root = tmp_path_factory.mktemp("sd")
    unet, te = _models()
    base = root / "base"
    unet.save_pretrained(base / "unet")
    te.save_pretrained(base / "text_encoder")
    (base / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    torch.manual_seed(1)
    unet.add_adapter(LoraConfig(r=R, lora_alpha=2 * R, target_modules=UNET_TARGETS, init_lora_weights=False))
    te = inject_adapter_in_model(LoraConfig(r=R, lora_alpha=2 * R, target_modules=TE_TARGETS, init_lora_weights=False), te)
    return root, base, unet, te


def _peft_deltas(unet, te) -> dict[str, np.ndarray]:
    """PEFT's own updates by dotted name (component first), as (out, in·kh·kw) float64."""
    out = {}
    for component, model in (("unet", unet), ("text_encoder", te)):
        for name, m in model.named_modules():
            if isinstance(m, LoraLayer):
                w = m.get_delta_weight("default").detach().double().numpy()
                out[f"{component}.{name}"] = w.reshape(w.shape[0], -1)
    return out


def _state(unet, te) -> dict[str, torch.Tensor]:
    sd = {f"unet.{k}": v for k, v in get_peft_model_state_dict(unet).items()}
    sd.update({f"text_encoder.{k}": v for k, v in get_peft_model_state_dict(te).items()})
    return sd


def _kohya_file(path: Path, unet, te, alpha: float | None, metadata: dict | None = None) -> Path:
    """diffusers' conversion to kohya's layout; it writes alpha = r, so sd-scripts' alpha is set after (None: removed)."""
    kohya = convert_state_dict_to_kohya(_state(unet, te))
    assert any(k.startswith("lora_unet_") for k in kohya) and any(k.startswith("lora_te1_") for k in kohya)
    for key in [k for k in kohya if k.endswith(".alpha")]:
        if alpha is None:
            del kohya[key]
        else:
            kohya[key] = torch.tensor(float(alpha))
    save_file({k: v.contiguous() for k, v in kohya.items()}, str(path), metadata=metadata)
    return path


def _kohya_name(dotted: str) -> str:
    component, _, rest = dotted.partition(".")
    return {"unet": "lora_unet_", "text_encoder": "lora_te1_"}[component] + rest.replace(".", "_")


def test_kohya_from_diffusers_conversion_equals_peft(sd, tmp_path):
    _, base, unet, te = sd
    want = _peft_deltas(unet, te)
    path = _kohya_file(tmp_path / "style.safetensors", unet, te, alpha=2 * R,
                       metadata={"ss_network_dim": str(R), "ss_network_alpha": str(2 * R), "ss_network_module": "networks.lora"})
    ckpt = discover(path)[0]
    assert ckpt.format == "kohya" and ckpt.metadata["ss_network_alpha"] == str(2 * R)
    got = {d.module: d for d in iter_deltas(ckpt)}
    assert set(got) == {_kohya_name(k) for k in want}
    convs = 0
    for dotted, w in want.items():
        d = got[_kohya_name(dotted)]
        assert d.kind == "lora" and d.is_factored and d.scale == pytest.approx(2.0)
        assert d.shape == w.shape
        np.testing.assert_allclose(d.to_dense(), w, rtol=0, atol=1e-6 * np.abs(w).max())
        convs += d.role == "conv" and w.shape[1] % 9 == 0 and "conv" in dotted
    assert convs >= 4  # 3×3 convolutions, read as out × (in·9)
    assert {got[_kohya_name("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q")].role,
            got[_kohya_name("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0")].role,
            got[_kohya_name("unet.down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj")].role,
            got[_kohya_name("unet.down_blocks.0.resnets.0.time_emb_proj")].role,
            got[_kohya_name("unet.down_blocks.0.attentions.0.proj_in")].role} == {"q", "o", "up", "time_embed", "proj_in"}
    assert got[_kohya_name("text_encoder.encoder.layers.1.self_attn.v_proj")].layer == 1
    # with the diffusers folder as base: dotted names, and the base weight reshaped like the update
    with_base = {d.module: d for d in iter_deltas(ckpt, base)}
    assert set(with_base) == set(want)
    # sd-scripts' CLIP names carry text_model_; a text encoder saved without that level still matches
    renamed = tmp_path / "sdscripts.safetensors"
    save_file({k.replace("lora_te1_", "lora_te_text_model_"): v for k, v in load_file(str(path)).items()}, str(renamed))
    names = {d.module for d in iter_deltas(discover(renamed)[0], base)}
    assert names == set(want)
    conv = "unet.down_blocks.0.resnets.0.conv1"
    W = unet.down_blocks[0].resnets[0].conv1.base_layer.weight.detach().double().numpy()
    np.testing.assert_array_equal(with_base[conv].base, W.reshape(W.shape[0], -1))
    np.testing.assert_allclose(with_base[conv].to_dense(), want[conv], rtol=0, atol=1e-6 * np.abs(want[conv]).max())


def test_kohya_alpha_absent_is_r_and_metadata_must_agree(sd, tmp_path):
    _, _, unet, te = sd
    want = _peft_deltas(unet, te)  # lora_alpha = 2r: s = 2; without alpha kohya reads s = 1
    got = {d.module: d for d in iter_deltas(discover(_kohya_file(tmp_path / "noalpha.safetensors", unet, te, None))[0])}
    for dotted, w in want.items():
        d = got[_kohya_name(dotted)]
        assert d.scale == 1.0
        np.testing.assert_allclose(d.to_dense(), w / 2, rtol=0, atol=1e-6 * np.abs(w).max())
    bad = _kohya_file(tmp_path / "disagree.safetensors", unet, te, None, metadata={"ss_network_dim": "4", "ss_network_alpha": "1"})
    with pytest.raises(FormatError, match=r"disagree\.safetensors: no 'lora_(?:unet|te1)_\w+\.alpha', so alpha = r = 4, but the file's metadata says alpha 1"):
        discover(bad)


def test_diffusers_format_file_reads_as_peft_lora(sd, tmp_path):
    _, base, unet, te = sd
    want = _peft_deltas(unet, te)
    state = _state(unet, te)
    unet_layers = {k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")}
    te_layers = {k.removeprefix("text_encoder."): v for k, v in state.items() if k.startswith("text_encoder.")}
    folder = tmp_path / "with_meta"
    StableDiffusionLoraLoaderMixin.save_lora_weights(
        folder, unet_lora_layers=unet_layers, text_encoder_lora_layers=te_layers,
        unet_lora_adapter_metadata=unet.peft_config["default"].to_dict(),
        text_encoder_lora_adapter_metadata=LoraConfig(r=R, lora_alpha=2 * R, target_modules=TE_TARGETS).to_dict())
    ckpt = discover(folder)[0]
    assert ckpt.format == "diffusers" and "lora_adapter_metadata" in ckpt.metadata
    got = {d.module: d for d in iter_deltas(ckpt, base)}
    assert set(got) == set(want)
    for dotted, w in want.items():
        np.testing.assert_allclose(got[dotted].to_dense(), w, rtol=0, atol=1e-6 * np.abs(w).max())
    # a file whose CLIP modules carry text_model. (older transformers) pairs with a text encoder saved without it
    wrapped = {k.replace("text_encoder.", "text_encoder.text_model.", 1): v for k, v in load_file(str(folder / "pytorch_lora_weights.safetensors")).items()}
    save_file(wrapped, str(tmp_path / "wrapped.safetensors"))
    paired = {d.module: d for d in iter_deltas(discover(tmp_path / "wrapped.safetensors")[0], base)}
    some = "text_encoder.text_model.encoder.layers.0.self_attn.q_proj"
    np.testing.assert_array_equal(paired[some].base, te.encoder.layers[0].self_attn.q_proj.base_layer.weight.detach().double().numpy())
    # without metadata diffusers loads alpha = r (scale 1), and so does lab
    folder = tmp_path / "plain"
    StableDiffusionLoraLoaderMixin.save_lora_weights(folder, unet_lora_layers=unet_layers, text_encoder_lora_layers=te_layers)
    got = {d.module: d for d in iter_deltas(discover(folder)[0])}
    for dotted, w in want.items():
        assert got[dotted].scale == 1.0
        np.testing.assert_allclose(got[dotted].to_dense(), w / 2, rtol=0, atol=1e-6 * np.abs(w).max())


def test_analyze_without_and_with_base_matches_numpy(sd, tmp_path):
    """Adapter-only probes without a base (entropy and norms recomputed here from the dense ΔW with numpy),
    alignment and intruders with the diffusers base."""
    import pandas as pd

    from lab.engine.analyze import analyze

    _, base, unet, te = sd
    want = _peft_deltas(unet, te)
    a = _kohya_file(tmp_path / "a.safetensors", unet, te, alpha=2 * R)
    b = _kohya_file(tmp_path / "b.safetensors", unet, te, alpha=R)
    analyze([a, b], out=tmp_path / "res", run="ab", probes=["entanglement", "spectra", "msu", "msu_pairs"], progress=False)
    folder = tmp_path / "res" / "ab"
    deltas = pd.read_parquet(folder / "deltas.parquet")
    conv = _kohya_name("unet.up_blocks.1.resnets.0.conv1")
    row = deltas[(deltas.checkpoint == "a.safetensors") & (deltas.module == conv)].iloc[0]
    w = want["unet.up_blocks.1.resnets.0.conv1"]
    assert row.fro_norm == pytest.approx(np.linalg.norm(w), rel=1e-6)
    s = np.linalg.svd(w, compute_uv=False)
    p = s**2 / np.sum(s**2)
    p = p[p > 0]
    ent = pd.read_parquet(folder / "entanglement.parquet")
    ent = ent[(ent.checkpoint == "a.safetensors") & (ent.module == conv) & (ent.source == "delta")]
    assert np.isclose(ent.entropy.to_numpy(), -np.sum(p * np.log(p)), rtol=1e-5).any()  # the row|column cut
    assert (folder / "msu_pairs.parquet").is_file() and len(pd.read_parquet(folder / "msu_pairs.parquet"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert all(c["format"] == "kohya" for c in manifest["inputs"]["checkpoints"])
    analyze([a], base=base, out=tmp_path / "res", run="based", probes=["spectra"], progress=False)
    spectra = pd.read_parquet(tmp_path / "res" / "based" / "spectra.parquet")
    assert spectra.module.str.startswith(("unet.", "text_encoder.")).all()
    assert spectra.overlap_left.notna().all() and spectra.intruder_count.notna().all()


def _lab(*args, timeout=300):
    return subprocess.run([str(Path(sys.executable).with_name("lab")), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_bad_kohya_files_one_line_exit_2(sd, tmp_path):
    _, base, unet, te = sd
    good = _kohya_file(tmp_path / "good.safetensors", unet, te, alpha=R)
    tensors = load_file(str(good))
    key = _kohya_name("unet.down_blocks.0.attentions.0.proj_in") + ".lora_up.weight"
    rank = dict(tensors, **{key: torch.randn(tensors[key].shape[0], R + 1)})
    save_file(rank, str(tmp_path / "rank.safetensors"))
    conv_key = _kohya_name("unet.down_blocks.0.resnets.0.conv1") + ".lora_up.weight"
    up = tensors[conv_key]
    conv = dict(tensors, **{conv_key: torch.randn(up.shape[0], up.shape[1], 3, 3)})
    save_file(conv, str(tmp_path / "conv.safetensors"))
    for name, key_in_line in (("rank", key.rsplit(".", 2)[0] + ".lora_down.weight"), ("conv", conv_key)):
        done = _lab("analyze", tmp_path / f"{name}.safetensors", "--out", tmp_path / "res")
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert f"{name}.safetensors" in lines[0] and key_in_line in lines[0]
    # a base that is not the one the LoRA was trained on: one line naming the module
    other = tmp_path / "other"
    _, te2 = _models()
    te2.save_pretrained(other / "text_encoder")
    (other / "model_index.json").write_text("{}")
    with pytest.raises(MatchError, match=r"good\.safetensors: module 'lora_unet_\w+' names no module of the base"):
        list(iter_deltas(discover(good)[0], other))
    done = _lab("analyze", good, "--base", other, "--out", tmp_path / "res")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "lora_unet_" in done.stderr


def test_merge_two_kohya_loras_writes_kohya(sd, tmp_path):
    """stack = the exact weighted sum; svd = its best rank-k approximation (numpy's SVD of the dense sum);
    both written as kohya files that lab reads back, 3×3 convolutions included."""
    from lab.merge.api import merge
    from lab.kernels.merging import MergeError

    _, base, unet, te = sd
    first = _peft_deltas(unet, te)
    a = _kohya_file(tmp_path / "a.safetensors", unet, te, alpha=2 * R)
    unet2, te2 = _models(seed=3)
    torch.manual_seed(5)
    unet2.add_adapter(LoraConfig(r=R, lora_alpha=R, target_modules=UNET_TARGETS, init_lora_weights=False))
    te2 = inject_adapter_in_model(LoraConfig(r=R, lora_alpha=R, target_modules=TE_TARGETS, init_lora_weights=False), te2)
    second = _peft_deltas(unet2, te2)
    b = _kohya_file(tmp_path / "b.safetensors", unet2, te2, alpha=R)
    weights = (0.7, 0.3)
    merge([a, b], tmp_path / "stacked", "stack", weights, results=tmp_path / "res")
    merge([a, b], tmp_path / "svd", "svd", weights, rank=3, results=tmp_path / "res")
    stacked = discover(tmp_path / "stacked")[0]
    assert stacked.format == "kohya" and stacked.metadata["ss_network_dim"] == str(2 * R)
    got = {d.module: d for d in iter_deltas(stacked)}
    low = {d.module: d for d in iter_deltas(discover(tmp_path / "svd")[0])}
    for dotted in first:
        T = weights[0] * first[dotted] + weights[1] * second[dotted]
        k = _kohya_name(dotted)
        np.testing.assert_allclose(got[k].to_dense(), T, rtol=0, atol=1e-6 * np.abs(T).max())
        U, s, Vt = np.linalg.svd(T, full_matrices=False)
        best = (U[:, :3] * s[:3]) @ Vt[:3]
        assert low[k].rank_bound == 3
        np.testing.assert_allclose(low[k].to_dense(), best, rtol=0, atol=1e-5 * np.abs(T).max())
    table = __import__("pandas").read_parquet(tmp_path / "res" / "merges" / "merge.parquet")
    assert set(table.checkpoint) == {"stacked", "svd"} and (table[table.checkpoint == "stacked"].rel_fro_error < 1e-6).all()
    with pytest.raises(MergeError, match="kohya image LoRAs are merged without them"):
        merge([a, b], tmp_path / "x", "stack", base=base, texts=tmp_path / "t.txt")


def test_flux_transformer_diffusers_file_and_bfl_kohya_names(tmp_path):
    """A tiny FLUX transformer from a diffusers config: its diffusers LoRA file (FluxLoraLoaderMixin's own
    save, with metadata) equals PEFT; kohya's BFL-named FLUX modules keep their names and get roles
    without a base, and are refused in one line against a diffusers FLUX folder (their names differ)."""
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders import FluxLoraLoaderMixin
    from safetensors.numpy import save_file as save_numpy

    torch.manual_seed(0)
    flux = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=4,
                                  num_attention_heads=2, joint_attention_dim=8, pooled_projection_dim=8, axes_dims_rope=(0, 2, 2))
    base = tmp_path / "flux"
    flux.save_pretrained(base / "transformer")
    (base / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    config = LoraConfig(r=2, lora_alpha=6, target_modules=["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "to_add_out",
                                                            "proj_mlp", "ff.net.2"], init_lora_weights=False)
    flux.add_adapter(config)
    layers = get_peft_model_state_dict(flux)
    FluxLoraLoaderMixin.save_lora_weights(tmp_path / "lora", transformer_lora_layers=layers,
                                          transformer_lora_adapter_metadata=config.to_dict())
    ckpt = discover(tmp_path / "lora")[0]
    assert ckpt.format == "diffusers"
    got = {d.module: d for d in iter_deltas(ckpt, base)}
    want = {f"transformer.{n}": m.get_delta_weight("default").detach().double().numpy()
            for n, m in flux.named_modules() if isinstance(m, LoraLayer)}
    assert set(got) == set(want)
    for name, w in want.items():
        assert got[name].scale == pytest.approx(3.0)
        np.testing.assert_allclose(got[name].to_dense(), w, rtol=0, atol=1e-6 * np.abs(w).max())
    assert (got["transformer.transformer_blocks.0.attn.add_q_proj"].role, got["transformer.transformer_blocks.0.attn.add_q_proj"].layer) == ("q", 0)
    assert (got["transformer.single_transformer_blocks.0.attn.to_k"].role, got["transformer.single_transformer_blocks.0.attn.to_k"].layer) == ("k", None)
    rng = np.random.default_rng(0)
    bfl = {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": rng.standard_normal((2, 8)).astype(np.float32),
           "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": rng.standard_normal((24, 2)).astype(np.float32),
           "lora_unet_double_blocks_0_img_attn_qkv.alpha": np.array(2.0, np.float32)}
    save_numpy(bfl, str(tmp_path / "bfl.safetensors"))
    (d,) = iter_deltas(discover(tmp_path / "bfl.safetensors")[0])
    assert (d.module, d.role, d.layer) == ("lora_unet_double_blocks_0_img_attn_qkv", "qkv", 0)
    with pytest.raises(MatchError, match=r"bfl\.safetensors: module 'lora_unet_double_blocks_0_img_attn_qkv' names no module of the base .*BFL"):
        list(iter_deltas(discover(tmp_path / "bfl.safetensors")[0], base))


def test_squeeze_refuses_image_loras_in_one_line(sd, tmp_path):
    _, _, unet, te = sd
    path = _kohya_file(tmp_path / "style.safetensors", unet, te, alpha=R)
    done = _lab("squeeze", path, "--rank", "2", "--out", tmp_path / "sq")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "style.safetensors" in lines[0] and "image-model LoRA" in lines[0]
    assert not (tmp_path / "sq").exists()


def test_diffusers_dora_file_is_peft_merged_update(tmp_path):
    """A DoRA LoRA in diffusers' format (lora_magnitude_vector, one entry per output row): with the base,
    lab's update equals PEFT's merged weight minus the base weight; without, the low-rank part, noted."""
    import copy

    unet, _ = _models(seed=2)
    base = tmp_path / "base"
    unet.save_pretrained(base / "unet")
    (base / "model_index.json").write_text("{}")
    torch.manual_seed(4)
    config = LoraConfig(r=2, lora_alpha=4, use_dora=True, target_modules=["to_q", "to_k", "ff.net.2"], init_lora_weights=False)
    unet.add_adapter(config)
    for name, p in unet.named_parameters():
        if "lora_magnitude_vector" in name:  # away from ‖W + sBA‖ so the rescaling matters
            p.data.mul_(1.3)
    StableDiffusionLoraLoaderMixin.save_lora_weights(tmp_path / "dora", unet_lora_layers=get_peft_model_state_dict(unet),
                                                     unet_lora_adapter_metadata=config.to_dict())
    want = {}
    for name, m in unet.named_modules():
        if isinstance(m, LoraLayer):
            layer = copy.deepcopy(m)
            W = layer.get_base_layer().weight.detach().double().numpy().copy()
            layer.merge(adapter_names=["default"])
            want[f"unet.{name}"] = layer.get_base_layer().weight.detach().double().numpy() - W
    ckpt = discover(tmp_path / "dora")[0]
    got = {d.module: d for d in iter_deltas(ckpt, base)}
    assert set(got) == set(want)
    for name, w in want.items():
        assert got[name].kind == "dora"
        np.testing.assert_allclose(got[name].to_dense(), w, rtol=0, atol=1e-5 * np.abs(w).max())
    alone = {d.module: d for d in iter_deltas(ckpt)}
    assert all(d.is_factored and "low-rank part only" in d.note for d in alone.values())


def test_diffusers_older_layouts_with_network_alphas(sd, tmp_path):
    """diffusers' non-PEFT layout (its own convert_state_dict_to_diffusers: lora.down/lora.up, CLIP's
    lora_linear_layer) with network alphas (<module>.alpha, alpha/r as diffusers applies them), and the
    attention processors' to_q_lora/to_out_lora names, equal PEFT's updates."""
    _, base, unet, te = sd
    want = _peft_deltas(unet, te)
    old = convert_state_dict_to_diffusers(_state(unet, te), original_type=StateDictType.PEFT)
    assert any(".lora.down.weight" in k for k in old) and any(".lora_linear_layer.down.weight" in k for k in old)
    old.update({f"{m}.alpha": torch.tensor(float(2 * R)) for m in want})
    save_file({k: v.contiguous() for k, v in old.items()}, str(tmp_path / "old.safetensors"))
    ckpt = discover(tmp_path / "old.safetensors")[0]
    assert ckpt.format == "diffusers"
    got = {d.module: d for d in iter_deltas(ckpt, base)}
    assert set(got) == set(want)
    for name, w in want.items():
        np.testing.assert_allclose(got[name].to_dense(), w, rtol=0, atol=1e-6 * np.abs(w).max())
    processors = {}
    for k, v in old.items():
        for proj, attr in (("to_q", "to_q"), ("to_out", "to_out.0")):
            k = k.replace(f".attn1.{attr}.lora.", f".attn1.processor.{proj}_lora.")
        processors[k] = v
    assert any(".processor.to_out_lora.down.weight" in k for k in processors)
    save_file({k: v.contiguous() for k, v in processors.items()}, str(tmp_path / "processors.safetensors"))
    got = {d.module: d for d in iter_deltas(discover(tmp_path / "processors.safetensors")[0])}
    name = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0"
    np.testing.assert_allclose(got[name].to_dense(), want[name], rtol=0, atol=1e-6 * np.abs(want[name]).max())


def _two_kohya_files(sd, tmp_path):
    """PEFT's updates of the fixture's LoRA (alpha 2r) and of a second one (another model seed, alpha r), and the
    two as kohya files a.safetensors and b.safetensors."""
    _, _, unet, te = sd
    a = _kohya_file(tmp_path / "a.safetensors", unet, te, alpha=2 * R)
    unet2, te2 = _models(seed=3)
    torch.manual_seed(7)
    unet2.add_adapter(LoraConfig(r=R, lora_alpha=R, target_modules=UNET_TARGETS, init_lora_weights=False))
    te2 = inject_adapter_in_model(LoraConfig(r=R, lora_alpha=R, target_modules=TE_TARGETS, init_lora_weights=False), te2)
    b = _kohya_file(tmp_path / "b.safetensors", unet2, te2, alpha=R)
    return _peft_deltas(unet, te), _peft_deltas(unet2, te2), a, b


@pytest.mark.parametrize("method", ["ties", "magnitude_prune", "dare_linear", "dare_ties"])
def test_task_vector_merge_of_kohya_loras(sd, tmp_path, method):
    """ties and magnitude_prune of two kohya files = PEFT's own merge_utils (``ties``, ``magnitude_prune``) on
    PEFT's updates of the same LoRAs, truncated to the rank by numpy's SVD, as PEFT's ``*_svd`` merges do; 3×3
    convolutions merge as out × (in·9). DARE at density 1 drops nothing, so it must equal the unpruned method."""
    from peft.utils import merge_utils

    from lab.merge.api import merge

    first, second, a, b = _two_kohya_files(sd, tmp_path)
    weights, rank = (0.6, 0.9), 3
    density = 1.0 if method.startswith("dare") else 0.5
    merge([a, b], tmp_path / "m", method, weights, rank=rank, density=density, results=tmp_path / "res")
    merged = discover(tmp_path / "m")[0]
    assert merged.format == "kohya"
    got = {d.module: d for d in iter_deltas(merged)}
    w = torch.tensor(weights, dtype=torch.float64)
    for dotted in first:
        tasks = [torch.from_numpy(first[dotted]), torch.from_numpy(second[dotted])]
        if method in ("ties", "dare_ties"):
            T = merge_utils.ties(tasks, w, density, "total")
        elif method == "magnitude_prune":
            T = merge_utils.magnitude_prune(tasks, w, density)
        else:  # dare_linear at density 1: the weighted sum
            T = merge_utils.task_arithmetic(tasks, w)
        T = T.numpy()
        U, s, Vt = np.linalg.svd(T, full_matrices=False)
        best = (U[:, :rank] * s[:rank]) @ Vt[:rank]
        d = got[_kohya_name(dotted)]
        assert d.rank_bound == rank and d.shape == T.shape
        np.testing.assert_allclose(d.to_dense(), best, rtol=0, atol=1e-5 * np.abs(T).max())


def test_dare_merge_of_kohya_loras_drops_and_rescales(sd, tmp_path):
    """DARE below density 1 on kohya files: a seed gives the same file twice and another seed another one, and
    before the rank truncation each module is Σ w_j·mask_j⊙ΔW_j/p, so at full rank every entry of the merge is a
    sum of a subset of {w_j·ΔW_j[i]/p}."""
    from lab.merge.api import merge

    first, second, a, b = _two_kohya_files(sd, tmp_path)
    weights, p = (0.6, 0.9), 0.5
    full = 2 * R  # rank of the sum of two rank-R updates: no truncation
    outs = {}
    for name, seed in (("s1", 1), ("s1again", 1), ("s2", 2)):
        merge([a, b], tmp_path / name, "dare_linear", weights, rank=full, density=p, seed=seed, results=tmp_path / "res")
        outs[name] = {d.module: d.to_dense() for d in iter_deltas(discover(tmp_path / name)[0])}
    assert all(np.array_equal(outs["s1"][k], outs["s1again"][k]) for k in outs["s1"])
    assert any(not np.allclose(outs["s1"][k], outs["s2"][k]) for k in outs["s1"])
    picked = []
    for dotted in first:
        k = _kohya_name(dotted)
        x, y = weights[0] * first[dotted] / p, weights[1] * second[dotted] / p
        got = outs["s1"][k]
        if min(got.shape) <= full:  # the merge's rank can hold the whole masked sum: compare entrywise
            options = np.stack([np.zeros_like(x), x, y, x + y])
            err = np.abs(options - got[None])
            assert err.min(axis=0).max() <= 1e-5 * np.abs(options).max()
            picked.append(err.argmin(axis=0).ravel())
    picked = np.concatenate(picked)
    # each entry of each task is kept with probability p: neither, one or both, about 1/4, 1/2, 1/4 of the entries
    share = np.bincount(picked, minlength=4) / picked.size
    assert picked.size > 1000 and abs(share[0] - 0.25) < 0.05 and abs(share[3] - 0.25) < 0.05
