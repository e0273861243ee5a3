"""Image-model LoRA files: kohya / sd-scripts (LoRA, LoCon), LyCORIS (LoHa, LoKr, full, DoRA) and
diffusers' PEFT-format ``pytorch_lora_weights.safetensors``, read exactly.

Formats (decided from the tensor names of one ``.safetensors`` file, :func:`image_format`):

* ``kohya``: keys ``<module>.<tensor>`` with a flattened module name ``lora_unet_…``, ``lora_te_…``,
  ``lora_te1_…``, ``lora_te2_…`` (FLUX: ``lora_unet_double_blocks_…``) and the tensors of one algorithm:
  ``lora_down.weight`` (r × in, or r × in × kh × kw), ``lora_up.weight`` (out × r [× 1 × 1]),
  LoCon's ``lora_mid.weight``; LoHa's ``hada_w1_a`` … ``hada_t2``; LoKr's ``lokr_w1[_a/_b]``,
  ``lokr_w2[_a/_b]``, ``lokr_t2``; full's ``diff``; and ``alpha`` (a scalar), DoRA's ``dora_scale``.
  The file's ``ss_network_*`` metadata is recorded in the manifest.
* ``diffusers``: ``<component>.<dotted module>.lora_A.weight`` / ``.lora_B.weight`` (components
  ``unet``, ``transformer``, ``text_encoder``, ``text_encoder_2`` …), read as PEFT LoRA; also diffusers'
  older layouts (``.lora.down.weight``/``.lora.up.weight``, CLIP's ``.lora_linear_layer.down.weight``, the
  attention processors' ``.processor.to_q_lora.down.weight``) and network alphas ``<module>.alpha``.

Scales: kohya / LyCORIS s = alpha/r with r the rank the formula names (:mod:`lab.checkpoints.lycoris`);
an absent or zero ``alpha`` means alpha = r (s = 1), as sd-scripts and LyCORIS load it; a missing
``alpha`` where the file's metadata (``ss_network_alpha``, or ``conv_alpha`` in ``ss_network_args`` for
a k × k convolution) says another value is refused, since the two loaders would disagree.
diffusers: s = alpha/r for a module with a network alpha (``<module>.alpha``), else lora_alpha/r
(``alpha_pattern`` by module) from the file's ``lora_adapter_metadata`` when saved with it, else 1, as
diffusers loads a file without alphas.

Every update is the matrix (out) × (in·kh·kw) (a convolution's update flattened, never multiplied
out); see :mod:`lab.checkpoints.lycoris`. Module names are kept as given, or with a diffusers model
folder as ``--base`` mapped to its dotted paths (:mod:`lab.checkpoints.diffusers_names`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from lab.checkpoints.diffusers_names import KOHYA_PREFIXES, KohyaNames, adapter_metadata, image_name
from lab.checkpoints.records import Base, Checkpoint, ModuleRead, Part
from lab.checkpoints.safetensors_header import TensorInfo
from lab.errors import FormatError, ShapeError

if TYPE_CHECKING:
    from lab.checkpoints.index import TensorIndex
    from lab.checkpoints.loader import TensorLoader

IMAGE_FORMATS = ("kohya", "diffusers")

# tensor name (after the module) -> algorithm; alpha and dora_scale go with any of them
_ALGO = {
    "lora_down.weight": "lora", "lora_up.weight": "lora", "lora_mid.weight": "lora",
    "hada_w1_a": "loha", "hada_w1_b": "loha", "hada_w2_a": "loha", "hada_w2_b": "loha", "hada_t1": "loha", "hada_t2": "loha",
    "lokr_w1": "lokr", "lokr_w1_a": "lokr", "lokr_w1_b": "lokr", "lokr_w2": "lokr", "lokr_w2_a": "lokr", "lokr_w2_b": "lokr",
    "lokr_t1": "lokr", "lokr_t2": "lokr",
    "diff": "full",
}
_SHARED = ("alpha", "dora_scale")
_SKIPPED = ("diff_b", "bias_indices", "bias_values", "bias_size", "lora_up.bias", "lora_down.bias", "scalar")
_KOHYA_KEY = re.compile(r"^(?:" + "|".join(re.escape(p) for p in KOHYA_PREFIXES) + r")[^.]*\.")
_COMPONENT = r"(?P<module>(?:unet|transformer|text_encoder(?:_\d)?|prior|decoder)\..+?)"
_DIFFUSERS_KEY = re.compile(
    "^" + _COMPONENT + r"\.(?P<part>lora_A|lora_B|lora_magnitude_vector)(?:\.(?P<adapter>(?!weight$)[^.]+))?(?:\.weight)?$"
)
# diffusers' older, non-PEFT layouts (what convert_state_dict_to_diffusers writes; attention processors' to_q_lora)
# and the network alphas a kohya file converted by diffusers keeps beside them
_DIFFUSERS_OLD_KEYS = (
    re.compile("^" + _COMPONENT + r"\.(?:lora|lora_linear_layer)\.(?P<part>down|up)\.weight$"),
    re.compile("^" + _COMPONENT + r"\.(?:processor\.)?(?P<proj>to_q|to_k|to_v|to_out)_lora\.(?P<part>down|up)\.weight$"),
    re.compile("^" + _COMPONENT + r"\.(?P<part>alpha)$"),
)
_DIFFUSERS_PARTS = {"lora_A": "lora_down.weight", "lora_B": "lora_up.weight", "lora_magnitude_vector": "dora_scale",
                    "down": "lora_down.weight", "up": "lora_up.weight", "alpha": "alpha"}
# an attention processor's projection: its module in the UNet, and in a CLIP text encoder
_PROCESSOR = {"to_q": ("to_q", "q_proj"), "to_k": ("to_k", "k_proj"), "to_v": ("to_v", "v_proj"), "to_out": ("to_out.0", "out_proj")}
METADATA_KEYS = ("ss_network_module", "ss_network_dim", "ss_network_alpha", "ss_network_args", "ss_base_model_version",
                 "ss_sd_model_name", "modelspec.architecture", "lora_adapter_metadata")


def image_format(keys) -> str | None:
    """``kohya`` or ``diffusers`` when the tensor names are one of those layouts, else None."""
    keys = list(keys)
    if any(_KOHYA_KEY.match(k) for k in keys):
        return "kohya"
    if any((m := _diffusers_match(k)) and m["part"] not in ("lora_magnitude_vector", "alpha") for k in keys):
        return "diffusers"
    return None


def _diffusers_match(key: str):
    match = _DIFFUSERS_KEY.match(key)
    for pattern in _DIFFUSERS_OLD_KEYS:
        match = match or pattern.match(key)
    return match


def _diffusers_module(match) -> str:
    module = match["module"]
    proj = match.groupdict().get("proj")
    if proj is None:
        return module
    unet, clip = _PROCESSOR[proj]
    module = module.removesuffix(".processor")
    return f"{module}.{clip if module.startswith('text_encoder') else unet}"


def file_metadata(path: Path) -> dict[str, str]:
    """The safetensors ``__metadata__`` strings of ``path`` ({} without)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n).decode("utf-8"))  # read_header has checked it already
    meta = header.get("__metadata__") or {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def recorded_metadata(path: Path) -> dict[str, str]:
    """What the manifest records of a kohya/diffusers file's metadata (``ss_network_dim``, ``ss_network_alpha`` ...)."""
    meta = file_metadata(path)
    return {k: meta[k] for k in METADATA_KEYS if k in meta}


@dataclass(frozen=True)
class ImageModule:
    """One adapted module of an image-model LoRA file: its tensors (not read), shape and scale.

    ``tensors`` maps kohya's tensor names (``lora_down.weight``, ``hada_w1_a``, ``lokr_w2``, ``diff``;
    a diffusers file's ``lora_A``/``lora_B`` under the names ``lora_down.weight``/``lora_up.weight``) to
    where they are; ``shape`` is the update's matrix (out, in·kh·kw); ``kernel`` the convolution's
    (kh, kw) when the tensors say it (LoCon's down, LoHa's/LoKr's Tucker cores, a 4-D ``lokr_w2`` or
    ``diff``), else (); ``rank`` the r of alpha/r (None: the scale is 1 by definition)."""

    name: str
    algo: str  # lora, loha, lokr, full
    tensors: tuple[tuple[str, TensorInfo], ...]
    shape: tuple[int, int]
    kernel: tuple[int, ...]
    rank: int | None
    scale: float
    scale_source: str
    dora: TensorInfo | None = None

    @property
    def by_name(self) -> dict[str, TensorInfo]:
        return dict(self.tensors)

    @property
    def files(self) -> list[str]:
        return sorted({str(i.file) for _, i in self.tensors} | ({str(self.dora.file)} if self.dora else set()))

    @property
    def params(self) -> int:
        """Stored parameters of the update (every tensor but alpha)."""
        return sum(math.prod(i.shape) for _, i in self.tensors) + (math.prod(self.dora.shape) if self.dora else 0)

    def rank_bound(self) -> int:
        """The structural rank bound of the update matrix (before capping by its shape)."""
        t = {k: i.shape for k, i in self.tensors}
        if self.algo == "lora":
            return t["lora_down.weight"][0]
        if self.algo == "loha":
            first = t["hada_w1_b"][0] if "hada_t1" not in t else t["hada_t1"][0]
            second = t["hada_w2_b"][0] if "hada_t2" not in t else t["hada_t2"][0]
            return first * second
        if self.algo == "lokr":
            return _lokr_bound(t, "1") * _lokr_bound(t, "2")
        return min(self.shape)


def _lokr_bound(t: dict, n: str) -> int:
    if f"lokr_w{n}" in t:
        s = t[f"lokr_w{n}"]
        return min(s[0], math.prod(s[1:]))
    if f"lokr_t{n}" in t:
        return t[f"lokr_t{n}"][0]
    return t[f"lokr_w{n}_b"][0]


def image_modules(index: TensorIndex, fmt: str, file: Path, loader: TensorLoader | None = None) -> list[ImageModule]:
    """The adapted modules of a kohya / LyCORIS / diffusers file, every shape and scale checked
    (ShapeError/FormatError naming the file and key)."""
    from lab.checkpoints.loader import TensorLoader

    meta = file_metadata(file)
    groups: dict[str, dict[str, TensorInfo]] = {}
    for key, info in index.tensors.items():
        module, name = _split_key(key, fmt, info)
        if module is None:
            continue
        if name in groups.setdefault(module, {}):
            raise FormatError(f"{info.file}: module '{module}' has two '{name}' tensors")
        groups[module][name] = info
    if not groups:
        raise FormatError(f"{file}: no LoRA/LyCORIS module tensors found (lora_down/lora_up, hada_*, lokr_*, diff or lora_A/lora_B)")
    config = adapter_metadata(meta, file) if fmt == "diffusers" else None
    own = loader is None
    loader = loader or TensorLoader()
    try:
        return [_module(name, parts, fmt, file, meta, config, loader) for name, parts in groups.items()]
    finally:
        if own:
            loader.close()


def _split_key(key: str, fmt: str, info: TensorInfo) -> tuple[str | None, str]:
    if fmt == "diffusers":
        match = _diffusers_match(key)
        if match is None:
            if ".lora_B.bias" in key or ".lora_A.bias" in key:
                return None, ""
            raise FormatError(f"{info.file}: tensor '{key}' is not a diffusers LoRA tensor (<component>.<module>.lora_A/lora_B.weight, "
                              "or diffusers' older lora.down/lora.up, lora_linear_layer, to_q_lora layouts)")
        return _diffusers_module(match), _DIFFUSERS_PARTS[match["part"]]
    module, _, name = key.partition(".")
    if name in _SKIPPED:
        return None, ""
    if name not in _ALGO and name not in _SHARED:
        raise FormatError(f"{info.file}: tensor '{key}' is not a kohya/LyCORIS tensor lab reads (LoRA/LoCon lora_down/"
                          "lora_up/lora_mid, LoHa hada_*, LoKr lokr_*, full diff, alpha, dora_scale)")
    return module, name


def _module(name: str, parts: dict[str, TensorInfo], fmt: str, file: Path, meta: dict, config: dict | None,
            loader: TensorLoader) -> ImageModule:
    algos = {_ALGO[k] for k in parts if k in _ALGO}
    if len(algos) != 1:
        what = "mixes " + " and ".join(sorted(algos)) + " tensors" if algos else f"has only {', '.join(sorted(parts))}"
        raise FormatError(f"{file}: module '{name}' {what}; each module holds one algorithm's tensors")
    algo = algos.pop()
    for key, info in parts.items():
        if not info.floating and key != "alpha":  # alpha may be stored as an integer (diffusers' conversion writes int64)
            raise FormatError(f"{info.file}: tensor '{info.key}' is {info.dtype}; LoRA tensors are floating point")
    alpha_info, dora = parts.pop("alpha", None), parts.pop("dora_scale", None)
    shape, kernel, rank = _shape(name, algo, parts, file)
    if fmt == "diffusers" and alpha_info is None:
        scale, source = _diffusers_scale(name, rank, config, file)
    else:
        scale, source = _kohya_scale(name, algo, parts, rank, kernel, alpha_info, meta, file, loader)
    n = math.prod(dora.shape) if dora is not None else 0
    # per output row, or per input channel (in = cols/(kh·kw); the kernel is unknown for a 2-D-stored LoHa conv: n | cols)
    if dora is not None and (n == 0 or n not in (shape[0], _in_channels(shape, kernel)) and (kernel or shape[1] % n)):
        raise ShapeError(f"{dora.file}: tensor '{dora.key}' is {list(dora.shape)}: a DoRA scale has one entry per output "
                         f"row ({shape[0]}) or input channel")
    return ImageModule(name, algo, tuple(sorted(parts.items())), shape, kernel, rank, scale, source, dora)


def _in_channels(shape: tuple[int, int], kernel: tuple[int, ...]) -> int:
    return shape[1] // math.prod(kernel) if kernel else shape[1]


def _need(parts: dict, file: Path, name: str, *keys: str) -> list[tuple[int, ...]]:
    missing = [k for k in keys if k not in parts]
    if missing:
        raise FormatError(f"{file}: module '{name}' has no '{name}.{missing[0]}' (it holds {', '.join(sorted(parts))}); "
                          "the LoRA file is incomplete")
    return [tuple(parts[k].shape) for k in keys]


def _key(name: str, part: str) -> str:
    return f"{name}.{part}"


def _shape(name: str, algo: str, parts: dict[str, TensorInfo], file: Path) -> tuple[tuple[int, int], tuple[int, ...], int | None]:
    """(out, in·kh·kw), the kernel when known, and the r of alpha/r; ShapeError for shapes that do not fit."""
    def bad(key: str, why: str):
        return ShapeError(f"{file}: tensor '{_key(name, key)}' is {list(parts[key].shape)}: {why}")

    if algo == "lora":
        up, down = _need(parts, file, name, "lora_up.weight", "lora_down.weight")
        if len(up) < 2 or len(down) < 2:
            raise bad("lora_up.weight" if len(up) < 2 else "lora_down.weight", "LoRA factors are at least 2-D")
        if any(d != 1 for d in up[2:]):
            raise bad("lora_up.weight", f"a convolution's lora_up must be out × r × 1 × 1 for ΔW = up·down to factor "
                                        f"(ΔW is read as the matrix out × (in·kh·kw))")
        if up[1] != down[0] and "lora_mid.weight" not in parts:
            raise ShapeError(f"{file}: '{_key(name, 'lora_up.weight')}' {list(up)} has rank {up[1]} but "
                             f"'{_key(name, 'lora_down.weight')}' {list(down)} has rank {down[0]}; up and down must share r")
        if "lora_mid.weight" in parts:
            mid = tuple(parts["lora_mid.weight"].shape)
            if len(mid) < 3 or mid[:2] != (up[1], down[0]) or any(d != 1 for d in down[2:]):
                raise bad("lora_mid.weight", f"LoCon's Tucker core must be r × r × kh × kw between lora_up {list(up)} "
                                             f"and a 1×1 lora_down {list(down)}")
            return (up[0], down[1] * math.prod(mid[2:])), mid[2:], down[0]
        return (up[0], math.prod(down[1:])), down[2:], down[0]
    if algo == "loha":
        if "hada_t1" in parts or "hada_t2" in parts:
            w1a, w1b, w2a, w2b, t1, t2 = _need(parts, file, name, "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b",
                                               "hada_t1", "hada_t2")
            for w, key in ((w1a, "hada_w1_a"), (w1b, "hada_w1_b"), (w2a, "hada_w2_a"), (w2b, "hada_w2_b")):
                if len(w) != 2:
                    raise bad(key, "a Tucker LoHa factor is r × out or r × in")
            for t, wa, wb, n in ((t1, w1a, w1b, "1"), (t2, w2a, w2b, "2")):
                if len(t) < 3 or t[:2] != (wa[0], wb[0]):
                    raise bad(f"hada_t{n}", f"the Tucker core must be r × r × kh × kw for hada_w{n}_a {list(wa)} and "
                                            f"hada_w{n}_b {list(wb)}")
            if (w1a[1], w1b[1], t1[2:]) != (w2a[1], w2b[1], t2[2:]):
                raise bad("hada_w2_a", "the two Hadamard operands must have one shape")
            return (w1a[1], w1b[1] * math.prod(t1[2:])), t1[2:], w1b[0]
        w1a, w1b, w2a, w2b = _need(parts, file, name, "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
        for wa, wb, n in ((w1a, w1b, "1"), (w2a, w2b, "2")):
            if len(wa) != 2 or len(wb) < 2:
                raise bad(f"hada_w{n}_a", "LoHa factors are out × r and r × in[·kh·kw]")
            if wa[1] != wb[0]:
                raise ShapeError(f"{file}: '{_key(name, f'hada_w{n}_a')}' {list(wa)} has rank {wa[1]} but "
                                 f"'{_key(name, f'hada_w{n}_b')}' {list(wb)} has rank {wb[0]}; they must share r")
        if (w1a[0], math.prod(w1b[1:])) != (w2a[0], math.prod(w2b[1:])):
            raise bad("hada_w2_a", f"the two Hadamard operands must have one shape ({w1a[0]} × {math.prod(w1b[1:])} "
                                   f"from hada_w1_a/hada_w1_b)")
        return (w1a[0], math.prod(w1b[1:])), w1b[2:], w1b[0]
    if algo == "lokr":
        (a, b), r1 = _lokr_factor(name, parts, "1", file, bad)
        (c, d), r2 = _lokr_factor(name, parts, "2", file, bad)
        kernel = ()
        if "lokr_w2" in parts:
            kernel = tuple(parts["lokr_w2"].shape[2:])
        elif "lokr_t2" in parts:
            kernel = tuple(parts["lokr_t2"].shape[2:])
        rank = r1 if r1 is not None else r2
        return (a * c, b * d), kernel, rank
    (diff,) = _need(parts, file, name, "diff")
    if len(diff) < 2:
        raise bad("diff", "a weight difference is at least 2-D")
    return (diff[0], math.prod(diff[1:])), diff[2:], None


def _lokr_factor(name: str, parts: dict, n: str, file: Path, bad) -> tuple[tuple[int, int], int | None]:
    """W_n's matrix shape (rows, cols; a conv's W2 c × d·kh·kw) and the r of its decomposition (None: whole)."""
    whole, a, b, t = (parts.get(f"lokr_w{n}"), parts.get(f"lokr_w{n}_a"), parts.get(f"lokr_w{n}_b"), parts.get(f"lokr_t{n}"))
    if whole is not None and a is None and b is None and t is None:
        s = tuple(whole.shape)
        if len(s) < 2 or (n == "1" and len(s) != 2):
            raise bad(f"lokr_w{n}", "a LoKr factor is a matrix (W2 of a convolution: c × d × kh × kw)")
        return (s[0], math.prod(s[1:])), None
    if whole is None and a is not None and b is not None:
        sa, sb = tuple(a.shape), tuple(b.shape)
        if t is not None:
            st = tuple(t.shape)
            if len(sa) != 2 or len(sb) != 2 or len(st) < 3 or st[:2] != (sa[0], sb[0]):
                raise bad(f"lokr_t{n}", f"LoKr's Tucker core must be r × r × kh × kw for lokr_w{n}_a {list(sa)} (r × c) "
                                        f"and lokr_w{n}_b {list(sb)} (r × d)")
            return (sa[1], sb[1] * math.prod(st[2:])), sb[0]
        if len(sa) != 2 or len(sb) < 2:
            raise bad(f"lokr_w{n}_a", "LoKr's decomposed factor is c × r and r × d[·kh·kw]")
        if sa[1] != sb[0]:
            raise ShapeError(f"{file}: '{_key(name, f'lokr_w{n}_a')}' {list(sa)} has rank {sa[1]} but "
                             f"'{_key(name, f'lokr_w{n}_b')}' {list(sb)} has rank {sb[0]}; they must share r")
        return (sa[0], math.prod(sb[1:])), sb[0]
    held = ", ".join(k for k in (f"lokr_w{n}", f"lokr_w{n}_a", f"lokr_w{n}_b", f"lokr_t{n}") if k in parts) or "none of them"
    raise FormatError(f"{file}: LoKr module '{name}' needs lokr_w{n}, or lokr_w{n}_a and lokr_w{n}_b (it holds {held})")


def _kohya_scale(name, algo, parts, rank, kernel, alpha_info, meta, file, loader) -> tuple[float, str]:
    if rank is None:  # full/diff, or LoKr with W1 and W2 whole: LyCORIS fixes the scale at 1
        return 1.0, f"{file}: '{name}' scale 1 ({'diff' if algo == 'full' else 'lokr_w1 and lokr_w2 whole'})"
    if alpha_info is None:
        expected = _metadata_alpha(meta, kernel)
        if expected is not None and not math.isclose(expected, rank):
            raise FormatError(f"{file}: no '{_key(name, 'alpha')}', so alpha = r = {rank}, but the file's metadata says "
                              f"alpha {expected:g}; add the alpha tensor or fix the metadata")
        return 1.0, f"{file}: '{name}' has no alpha: alpha = r = {rank}"
    if math.prod(alpha_info.shape) != 1:
        raise ShapeError(f"{file}: tensor '{alpha_info.key}' is {list(alpha_info.shape)}; alpha is a scalar")
    alpha = float(np.asarray(loader.get(alpha_info, allow_nonfinite=True)).reshape(()))
    if not math.isfinite(alpha):
        raise FormatError(f"{file}: tensor '{alpha_info.key}' is {alpha}; alpha must be finite")
    if alpha == 0:  # sd-scripts and LyCORIS read alpha 0 as alpha = r
        return 1.0, f"{file}: '{alpha_info.key}' = 0: alpha = r = {rank}"
    return alpha / rank, f"{file}: '{alpha_info.key}' = {alpha:g} / r = {rank}"


def _metadata_alpha(meta: dict, kernel: tuple[int, ...]) -> float | None:
    """The alpha the metadata gives a module: ``conv_alpha`` of ``ss_network_args`` for a k×k convolution, else ``ss_network_alpha``."""
    value = meta.get("ss_network_alpha")
    if kernel and math.prod(kernel) > 1 and "ss_network_args" in meta:
        try:
            args = json.loads(meta["ss_network_args"])
            value = args.get("conv_alpha", value) if isinstance(args, dict) else value
        except ValueError:
            pass
    try:
        return float(value) if value not in (None, "None", "") else None
    except (TypeError, ValueError):
        return None


def _diffusers_scale(name: str, rank: int, config: dict | None, file: Path) -> tuple[float, str]:
    if config is None:
        return 1.0, f"{file}: no lora_adapter_metadata: alpha = r = {rank} (as diffusers loads it)"
    component, _, module = name.partition(".")
    alpha = config.get(f"{component}.lora_alpha")
    pattern = config.get(f"{component}.alpha_pattern") or {}
    if isinstance(pattern, dict) and pattern:
        from peft.utils.other import get_pattern_key

        key = get_pattern_key(pattern.keys(), module)
        alpha = pattern.get(key, alpha)
    if alpha is None:
        return 1.0, f"{file}: lora_adapter_metadata has no {component}.lora_alpha: alpha = r = {rank}"
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha):
        raise FormatError(f"{file}: lora_adapter_metadata's lora_alpha for '{name}' is {alpha!r}; it must be a number")
    rs = bool(config.get(f"{component}.use_rslora"))
    return float(alpha) / (math.sqrt(rank) if rs else rank), (
        f"{file}: lora_adapter_metadata {component}.lora_alpha = {alpha:g} / {'√r' if rs else 'r'} = {rank}")


def plan_image(ckpt: Checkpoint, base: Base | None, select: Callable[[str], bool], allow_nonfinite: bool,
               fmt: str) -> list[ModuleRead]:
    """The module reads of a kohya / LyCORIS / diffusers file; with a diffusers ``base`` each module
    is named by the base's dotted path and paired with its weight (MatchError/ShapeError now)."""
    from lab.checkpoints.naming import natural_key

    file = ckpt.layout.weights[0]
    names = KohyaNames(base.index.keys(), base.path) if base is not None and ckpt.format == "kohya" else None
    out = []
    for m in sorted(image_modules(ckpt.index, ckpt.format, file), key=lambda m: natural_key(m.name)):
        module = names.dotted(m.name, file) if names is not None else m.name
        name = image_name(module)
        if not select(module):
            continue
        info = _base_info(m, module, base, file) if base is not None else None
        kind = "dora" if m.dora is not None else m.algo
        by = m.by_name
        out.append(ModuleRead(
            checkpoint=ckpt.name, format=fmt, module=module, layer=name.layer, role=name.role, kind=kind, shape=m.shape,
            parts=(Part(module, name.role),), base=info,
            A=by.get("lora_down.weight") if m.algo == "lora" else None, B=by.get("lora_up.weight"),
            magnitude=m.dora, scale=m.scale, scale_source=m.scale_source, allow_nonfinite=allow_nonfinite, kohya=m,
        ))
    return out


def _base_info(m: ImageModule, module: str, base: Base, file: Path) -> TensorInfo:
    from lab.errors import MatchError

    key = f"{module}.weight"
    component, _, rest = key.partition(".")
    if key not in base.index and rest.startswith("text_model.") and f"{component}.{rest[len('text_model.'):]}" in base.index:
        key = f"{component}.{rest[len('text_model.'):]}"  # a CLIP saved by transformers >= 5 has no text_model. level
    if key not in base.index:
        raise MatchError(f"{base.path}: no tensor '{key}' for module '{m.name}' of {file}; pass the diffusers model "
                         "folder the LoRA was trained on")
    info = base.index[key]
    stored = tuple(info.shape)
    if len(stored) < 2 or (stored[0], math.prod(stored[1:])) != m.shape or (m.kernel and tuple(stored[2:]) != m.kernel):
        raise ShapeError(f"{info.file}: tensor '{info.key}' is {list(stored)} but '{m.name}' of {file} is an update of "
                         f"{m.shape[0]} × {m.shape[1]}{' with kernel ' + str(list(m.kernel)) if m.kernel else ''}; "
                         "pass the model the LoRA was trained on")
    return info


def read_image(spec: ModuleRead, loader: TensorLoader, stream_bytes: int | None = None):
    """(ΔW as Factors, Kron or dense (out, in·kh·kw); the base weight W (out, in·kh·kw) or None; note).
    ``stream_bytes``: not used (image-model modules are read whole), as a format's reader may be called with it."""
    from lab.checkpoints import lycoris
    from lab.checkpoints.dora import NOTE_NO_BASE
    from lab.deltas import Factors, Kron

    m: ImageModule = spec.kohya
    t = {k: loader.get(i, spec.allow_nonfinite) for k, i in m.tensors}
    if m.algo == "lora":
        matrix = lycoris.locon(t["lora_up.weight"], t["lora_down.weight"], m.scale, t.get("lora_mid.weight"))
        note = "lora: Tucker core folded into A" if "lora_mid.weight" in t else ""
    elif m.algo == "loha":
        matrix = lycoris.loha(t["hada_w1_a"], t["hada_w1_b"], t["hada_w2_a"], t["hada_w2_b"], m.scale,
                              t.get("hada_t1"), t.get("hada_t2"))
        note = (f"loha: Khatri–Rao factors, rank ≤ {m.rank_bound()}" if isinstance(matrix, Factors)
                else f"loha: dense ΔW (r1·r2 = {m.rank_bound()} ≥ min(rows, cols))")
    elif m.algo == "lokr":
        matrix = lycoris.lokr(_lokr_w(t, "1"), _lokr_w(t, "2"), m.scale)
        note = ""
    else:
        matrix, note = np.ascontiguousarray(t["diff"].reshape(m.shape)), ""
    if matrix.shape != m.shape:  # a Kron whose factors do not fill the module (checked from shapes; kept for safety)
        raise ShapeError(f"{spec.kohya.tensors[0][1].file}: the update of '{m.name}' is {list(matrix.shape)}, not {list(m.shape)}")
    finite = matrix.is_finite() if isinstance(matrix, (Factors, Kron)) else bool(np.isfinite(matrix).all())
    if finite and not np.isfinite(matrix.fro_norm() if isinstance(matrix, (Factors, Kron)) else np.linalg.norm(matrix)):
        raise FormatError(f"{spec.scale_source}: the update of '{m.name}' overflows float64; fix alpha or the weights")
    W = None
    if spec.base is not None:
        W4 = loader.get(spec.base, spec.allow_nonfinite)
        W = np.ascontiguousarray(W4.reshape(m.shape))
    if m.dora is None:
        return matrix, W, note
    if W is None:
        return matrix, None, "; ".join(filter(None, [note, NOTE_NO_BASE]))
    dense = matrix if isinstance(matrix, np.ndarray) else matrix.to_dense()
    scale = loader.get(m.dora, spec.allow_nonfinite)
    return lycoris.dora(W4, dense.reshape(W4.shape), scale).reshape(m.shape), W, note


def _lokr_w(t: dict, n: str):
    from lab.checkpoints.lycoris import tucker_factors
    from lab.deltas import Factors

    if f"lokr_w{n}" in t:
        w = t[f"lokr_w{n}"]
        return w.reshape(w.shape[0], -1)
    if f"lokr_t{n}" in t:
        return Factors(*tucker_factors(t[f"lokr_t{n}"], t[f"lokr_w{n}_a"], t[f"lokr_w{n}_b"]))
    b = t[f"lokr_w{n}_b"]
    return Factors(t[f"lokr_w{n}_a"], b.reshape(b.shape[0], -1))
