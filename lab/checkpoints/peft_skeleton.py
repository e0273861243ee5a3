"""The skeleton every non-LoRA PEFT read goes through: the base model built on the meta device (no
weights) and wrapped by PEFT with the adapter's own config, cached per process.

:mod:`lab.checkpoints.peft_general` plans and reads through it (PEFT computes the update), and the
structured readers of :mod:`lab.checkpoints.peft_types` consult it for what PEFT derives and does not save
(VeRA's projections, whether a LoKr layer is an ``nn.Linear``). A read materialises one module's tensors in
it under :data:`skeleton_lock` and puts them back on exit; everything else stays on meta.

* :func:`skeleton` — (PeftModel, PEFT's load result) for an adapter file, its config and the base's config.
* :func:`peft_config` — PEFT's own config object of an ``adapter_config.json``.
* :func:`tuner_layers`, :func:`owner` — the tuner layers by name, and the layer a tensor key belongs to.
* :data:`ADAPTER` — the adapter name the skeleton loads the file under; :func:`quiet` — a function with
  PEFT's and transformers' warnings silenced.
"""

from __future__ import annotations

import functools
import threading
import warnings
from functools import lru_cache
from pathlib import Path

from lab.checkpoints.adapter_config import peft_type, read_json, shown
from lab.checkpoints.adapter_weights import PEFT_PREFIX
from lab.checkpoints.index import TensorIndex
from lab.errors import FormatError, ShapeError

ADAPTER = "default"  # the adapter name the skeleton loads the file under
skeleton_lock = threading.Lock()  # the cached skeleton is shared by every read of this process


def quiet(fn):
    """``fn`` with Python warnings silenced: PEFT's and transformers' advice while the skeleton is built
    and a module read (deprecations, "consider save_projection") would break lab's one-line output;
    whatever matters becomes a LabError instead."""
    @functools.wraps(fn)
    def quiet(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)
    return quiet


def skeleton(config: str, base_config: str, weights: str):
    """(the PeftModel skeleton, PEFT's load result) of the adapter ``config`` with the tensors of ``weights``
    on the base of ``base_config`` (see :func:`_build`); cached per process, rebuilt when one of the three
    files changed on disk. Hold :data:`skeleton_lock` while materialising anything in it."""
    stamps = tuple((s.st_mtime_ns, s.st_size) for s in (Path(p).stat() for p in (config, base_config, weights)))
    return _build(config, base_config, weights, stamps)


@lru_cache(maxsize=2)
@quiet
def _build(config: str, base_config: str, weights: str, stamps: tuple):
    """PeftModel(base built from ``base_config``, the adapter of ``config``) holding no weights, eval
    mode, with PEFT's load result for the keys and shapes of ``weights``.

    The base is built on the meta device; every parameter then becomes a placeholder of its shape
    (one element of storage, stride 0) so that PEFT initialises the adapter for real: the state it
    derives and does not save (OFT's index buffers, AdaLoRA's ranknum, SHiRA's masks) is computed as
    PEFT computes it. The file's tensors are then loaded as meta tensors of their stored shapes, the
    way ``PeftModel.from_pretrained`` loads them, which checks keys and shapes and leaves every saved
    adapter tensor on meta until a read materialises it.
    """
    import torch
    import transformers
    from peft import get_peft_model
    from peft.utils import set_peft_model_state_dict

    try:
        model_config = transformers.AutoConfig.from_pretrained(str(Path(base_config).parent))
    except Exception as e:
        raise FormatError(f"{base_config}: transformers cannot read the base config ({first_line(e)})") from None
    cls = next((getattr(transformers, a) for a in (getattr(model_config, "architectures", None) or [])
                if isinstance(a, str) and hasattr(transformers, a)), None)

    def on_meta():
        try:
            with torch.device("meta"):
                return cls._from_config(model_config) if cls is not None else transformers.AutoModel.from_config(model_config)
        except Exception as e:
            raise FormatError(f"{base_config}: transformers cannot build the model it describes ({first_line(e)})") from None

    ptype = peft_type(Path(config))
    index = TensorIndex.from_files([Path(weights)])
    _check_on_meta(on_meta(), config, ptype, index, weights)
    model = on_meta()
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is not None:
                module._parameters[name] = torch.nn.Parameter(_placeholder(param), requires_grad=False)
    try:
        wrapped = get_peft_model(model, peft_config(config, ptype), adapter_name=ADAPTER).eval()
    except Exception as e:
        raise FormatError(f"{config}: PEFT cannot apply this {ptype} adapter to the base of {base_config} ({first_line(e)})") from None
    # shared tensors (VeRA's vera_A/vera_B, RandLoRA's bases) are copied into PEFT's own buffers, so
    # they load as zeros (real, once per model); a module's tensors load as meta
    layers = tuner_layers(wrapped)
    state = {key: torch.empty(info.shape, device="meta") if owner(key, layers) is not None else torch.zeros(info.shape)
             for key, info in index.tensors.items()}
    try:
        result = set_peft_model_state_dict(wrapped, state, adapter_name=ADAPTER, low_cpu_mem_usage=True)
    except Exception as e:
        detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), None)
        if detail is not None:  # load_state_dict's "size mismatch for <key>: ..."
            raise ShapeError(f"{weights}: {detail} (the {ptype} config {Path(config).name} and the tensors disagree)") from None
        if "meta tensor" in str(e):  # the tuner copies into its own tensors on load: they need real storage
            raise FormatError(f"{weights}: lab's general path cannot load this {ptype} adapter (of {Path(config).name}) "
                              f"onto a model without weights ({first_line(e)}); no reader for {ptype} yet") from None
        raise FormatError(f"{weights}: PEFT cannot load it as the {ptype} adapter of {Path(config).name} ({first_line(e)})") from None
    config_object = wrapped.peft_config[ADAPTER]
    if getattr(config_object, "rank_pattern", None) and ptype == "ADALORA":
        config_object.rank_pattern = None  # AdaLoRA's modules are resized to it now; a later load would resize again
    return wrapped, result


def _check_on_meta(model, config: str, ptype: str, index: TensorIndex, weights: str) -> None:
    """The file's shapes against an adapter PEFT builds entirely on meta, where it can: a config that
    does not describe the file (an r of 10⁶ over tensors of r = 8) is refused before PEFT allocates
    that adapter for real. Types PEFT cannot build or load on meta are left to the real build."""
    import torch
    from peft import get_peft_model
    from peft.utils import set_peft_model_state_dict

    try:
        wrapped = get_peft_model(model, peft_config(config, ptype), adapter_name=ADAPTER, low_cpu_mem_usage=True)
        state = {key: torch.empty(info.shape, device="meta") for key, info in index.tensors.items()}
        set_peft_model_state_dict(wrapped, state, adapter_name=ADAPTER, low_cpu_mem_usage=True)
    except Exception as e:
        detail = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), None)
        if detail is not None:
            raise ShapeError(f"{weights}: {detail} (the {ptype} config {Path(config).name} and the tensors disagree)") from None


def _placeholder(t):
    """A CPU tensor of ``t``'s shape and dtype backed by one element (stride 0): no storage to speak of."""
    import torch

    return torch.zeros((), dtype=t.dtype).expand(t.shape)


@quiet
def peft_config(config: str, ptype: str):
    """PEFT's own config object for the file, in inference mode (FormatError naming it when PEFT refuses the file)."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    cls = PEFT_TYPE_TO_CONFIG_MAPPING.get(ptype)
    if cls is None:
        raise FormatError(f"{config}: PEFT has no tuner for peft_type {shown(ptype)}")
    raw = read_json(Path(config), "fix or re-save the adapter")
    try:
        made = cls.from_peft_type(**{k: v for k, v in raw.items() if k != "peft_type"}, peft_type=ptype)
    except Exception as e:
        raise FormatError(f"{config}: PEFT refuses this {ptype} config ({first_line(e)})") from None
    made.inference_mode = True
    return made


def tuner_layers(model) -> dict:
    """The skeleton's PEFT tuner layers by module name (PEFT's name, under ``base_model.model``)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {name: m for name, m in model.base_model.model.named_modules() if isinstance(m, BaseTunerLayer)}


def is_conv1d(layer) -> bool:
    """Whether ``layer`` is GPT-2's Conv1D, which stores its weight (in, out)."""
    from transformers.pytorch_utils import Conv1D

    return isinstance(layer, Conv1D)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, at most 300 characters: what a one-line LabError quotes."""
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def owner(key: str, layers: dict) -> str | None:
    """The adapted layer (a name of :func:`tuner_layers`) a (file or model) key belongs to, None for a model-level tensor."""
    key = key.removeprefix(PEFT_PREFIX)
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:i])
        if name in layers:
            return name
    return None
