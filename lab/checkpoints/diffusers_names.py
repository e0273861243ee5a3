"""Image models' module names: roles and layers, a diffusers model folder as a base, and kohya's
flattened names mapped back to its dotted module paths.

kohya / sd-scripts name a module by its path in the diffusers model with every ``.`` turned into
``_`` and a prefix for the component: ``lora_unet_down_blocks_0_attentions_0_proj_in`` is the UNet's
``down_blocks.0.attentions.0.proj_in``, ``lora_te_`` / ``lora_te1_`` the (first) text encoder's,
``lora_te2_`` the second's. The flattening loses where the dots were, so the mapping needs the
model's own names: with a diffusers model folder as ``--base`` (``model_index.json`` and one
subfolder per component: ``unet/``, ``transformer/``, ``text_encoder/``, ``text_encoder_2/``...)
each module ``<component>.<path>`` of the base is flattened the same way and looked up; the
module is then named by its dotted path ``unet.down_blocks.0.attentions.0.proj_in``, the name a
diffusers (PEFT-format) LoRA file uses for the same module. sd-scripts names CLIP's modules
``lora_te_text_model_encoder_…``; a text encoder saved by a transformers version without the
``text_model.`` level is matched without it. Without a base the names stay as the
file gives them. FLUX files written by kohya use Black Forest Labs' original names
(``lora_unet_double_blocks_0_img_attn_qkv``), which a diffusers FLUX folder does not have: they map
only to a base with those names and are refused with one line otherwise.

Roles (the ``role`` column) are matched on the name with ``.`` written as ``_``, so a kohya name
and the dotted one get the same role: attention ``q``/``k``/``v``/``o`` (``to_q``... ``to_out_0``,
FLUX's ``add_q_proj``... ``to_add_out``, BFL's ``img_attn_qkv`` as ``qkv`` and ``img_attn_proj`` as
``o``), feed-forward ``up``/``down`` (``ff_net_0_proj``, ``ff_net_2``, BFL's ``img_mlp_0``/``_2``),
``conv`` (resnet, sampler and in/out convolutions), ``time_embed`` (``time_emb_proj``,
``time_embedding_linear_N``, SDXL's ``add_embedding``), ``proj_in``/``proj_out`` (a transformer
block's input and output projections), and the text encoders' roles from :mod:`lab.checkpoints.naming`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from lab.checkpoints.naming import RULES, ModuleName
from lab.errors import FormatError, InputError, MatchError

# kohya prefix -> the diffusers components it may name, in the order they are tried
KOHYA_PREFIXES: dict[str, tuple[str, ...]] = {
    "lora_unet_": ("unet", "transformer"),
    "lora_te1_": ("text_encoder",),
    "lora_te2_": ("text_encoder_2",),
    "lora_te3_": ("text_encoder_3",),
    "lora_te_": ("text_encoder",),
    "lora_transformer_": ("transformer",),
}
COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2", "text_encoder_3", "prior", "decoder")

# (flattened suffix, role): image models first, then naming's rules written with "_"
_IMAGE_RULES: tuple[tuple[str, str], ...] = (
    ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out_0", "o"),
    ("add_q_proj", "q"), ("add_k_proj", "k"), ("add_v_proj", "v"), ("to_add_out", "o"),
    ("attn_qkv", "qkv"), ("attn_proj", "o"),
    ("ff_net_0_proj", "up"), ("ff_net_2", "down"), ("ff_context_net_0_proj", "up"), ("ff_context_net_2", "down"),
    ("mlp_0", "up"), ("mlp_2", "down"),
    ("time_emb_proj", "time_embed"), ("time_embedding_linear_1", "time_embed"), ("time_embedding_linear_2", "time_embed"),
    ("add_embedding_linear_1", "time_embed"), ("add_embedding_linear_2", "time_embed"),
    ("proj_in", "proj_in"), ("proj_out", "proj_out"),
    ("conv1", "conv"), ("conv2", "conv"), ("conv_shortcut", "conv"), ("conv_in", "conv"), ("conv_out", "conv"),
    ("downsamplers_0_conv", "conv"), ("upsamplers_0_conv", "conv"),
)
_RULES = tuple((s, r) for s, r in _IMAGE_RULES) + tuple((rule.suffix.replace(".", "_"), rule.role)
                                                       for rule in RULES if not rule.split and not rule.conv1d)
_ORDERED = sorted(_RULES, key=lambda sr: -sr[0].count("_"))
_PATTERNS = [(re.compile(r"(?:^|_)" + re.escape(suffix) + r"$"), role) for suffix, role in _ORDERED]
# text encoders' layers.N, DiT / FLUX (double) blocks; a UNet's blocks and FLUX's single blocks get no layer
# (FLUX's single blocks follow the double ones: one index for both would be a guess)
_LAYER = re.compile(r"(?:^|_)(?<!single_)(?:layers|transformer_blocks|double_blocks|joint_blocks)_(\d+)(?:_|$)")


def image_name(module: str) -> ModuleName:
    """(layer, role) of an image model's module, kohya's flattened name or the dotted path alike."""
    flat = module.replace(".", "_")
    role = next((role for pattern, role in _PATTERNS if pattern.search(flat)), "other")
    layer = None if re.search(r"(?:^|_)(?:down_blocks|up_blocks|mid_block|single_transformer_blocks|single_blocks)(?:_|$)", flat) else _layer(flat)
    return ModuleName(module, layer, role)


def _layer(flat: str) -> int | None:
    match = _LAYER.search(flat)
    return int(match.group(1)) if match else None


def is_diffusers_folder(path: Path) -> bool:
    """A diffusers model folder: ``model_index.json``, or no weights at the top and a component subfolder with a config."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / "model_index.json").is_file():
        return True
    return any((path / c / "config.json").is_file() for c in COMPONENTS)


@dataclass(frozen=True)
class Component:
    """One component folder of a diffusers model: its name, weight files (or index json) and config."""

    name: str
    weights: tuple[Path, ...]
    config: Path | None


def components(path: Path) -> list[Component]:
    """The components of a diffusers folder that hold weights (InputError when none does)."""
    found = []
    for sub in sorted(p for p in Path(path).iterdir() if p.is_dir() and not p.name.startswith(".")):
        weights = _component_weights(sub)
        if weights:
            config = sub / "config.json"
            found.append(Component(sub.name, weights, config if config.is_file() else None))
    if not found:
        raise InputError(f"{path}: a diffusers model folder without weights in its component subfolders "
                         f"({', '.join(COMPONENTS[:4])}, ...); download the model with its weights")
    return found


def _component_weights(sub: Path) -> tuple[Path, ...]:
    index = sorted(sub.glob("*.safetensors.index.json"))
    if index:
        return (index[0],)
    files = sorted(p for p in sub.glob("*.safetensors") if p.is_file())
    if len(files) > 1:  # a variant (fp16) beside the default: prefer the one without a variant
        plain = [p for p in files if p.name.count(".") == 1]
        files = plain[:1] or files[:1]
    if not files:
        files = sorted(p for p in sub.glob("*.bin") if p.is_file())[:1]
    return tuple(files)


def open_diffusers_base(path: Path):
    """The :class:`~lab.checkpoints.base.Base` of a diffusers folder: every component's tensors under
    ``<component>.<key>`` (``unet.down_blocks.0.resnets.0.conv1.weight``), one index for the run."""
    from lab.checkpoints.records import Base
    from lab.checkpoints.index import TensorIndex
    from lab.checkpoints.pairing import BaseKeys

    path = Path(path)
    merged = TensorIndex()
    for comp in components(path):
        if comp.weights[0].name.endswith(".index.json"):
            sub = TensorIndex.from_index_json(comp.weights[0])
        else:
            sub = TensorIndex.from_files(list(comp.weights))
        merged.files += sub.files + ([comp.config] if comp.config else [])
        for key, info in sub.tensors.items():
            merged.tensors[f"{comp.name}.{key}"] = info
    config = path / "model_index.json"
    return Base(path, merged, "diffusers", BaseKeys(merged.keys(), str(path)), config if config.is_file() else None)


class KohyaNames:
    """kohya's flattened module names looked up among a diffusers base's dotted ones."""

    def __init__(self, keys: list[str], where: Path) -> None:
        self.where = where
        self._flat: dict[str, list[str]] = {}
        for key in keys:
            if key.endswith(".weight"):
                module = key[: -len(".weight")]
                self._flat.setdefault(module.replace(".", "_"), []).append(module)

    def dotted(self, kohya: str, file: Path) -> str:
        """The base's dotted module path (``unet.down_blocks.0...``) of kohya module ``kohya``; MatchError when none or several."""
        prefix = next((p for p in KOHYA_PREFIXES if kohya.startswith(p)), None)
        if prefix is None:
            raise MatchError(f"{file}: module '{kohya}' has no kohya prefix ({', '.join(KOHYA_PREFIXES)}) to find it in "
                             f"the base {self.where}")
        rest = kohya[len(prefix):]
        for component in KOHYA_PREFIXES[prefix]:
            hits = self._flat.get(f"{component}_{rest}", [])
            if not hits and rest.startswith("text_model_"):  # CLIP saved by transformers ≥ 5 has no text_model. level
                hits = self._flat.get(f"{component}_{rest.removeprefix('text_model_')}", [])
            if len(hits) > 1:
                raise MatchError(f"{file}: module '{kohya}' matches several modules of {self.where} ({', '.join(hits)})")
            if hits:
                return hits[0]
        raise MatchError(f"{file}: module '{kohya}' names no module of the base {self.where} "
                         f"(looked for {' or '.join(c + '.' + rest.replace('_', '.') + '…' for c in KOHYA_PREFIXES[prefix])}); "
                         "pass the diffusers model folder the LoRA was trained on (FLUX files from kohya use BFL's names)")


def adapter_metadata(raw: dict[str, str], file: Path) -> dict | None:
    """diffusers' ``lora_adapter_metadata`` (the LoraConfig per component, ``unet.lora_alpha`` ...) or None."""
    text = raw.get("lora_adapter_metadata")
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise FormatError(f"{file}: its 'lora_adapter_metadata' is not valid JSON; re-save the LoRA") from None
    if not isinstance(value, dict):
        raise FormatError(f"{file}: its 'lora_adapter_metadata' is not a JSON object; re-save the LoRA")
    return value
