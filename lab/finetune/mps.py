"""MPS Adaptation (Artificial Entanglement, arXiv 2601.06788): the torch module, wrapping a model's
linear layers with it, and saving / loading its adapter folders.

ΔW = (α/r)·B·A_MPS, A_MPS[a, (i1, i2)] = Σ_c C1[a, i1, c]·C2[c, i2] (B: out × r, C1: r × d1 × χ,
C2: χ × d2, d_in = d1·d2, input index i = i1·d2 + i2). The frozen Linear's output gets
(α/r)·B·(A_MPS·x), computed without building A_MPS: x reshaped (d1, d2) is contracted with C2 over
i2, then with C1 over (i1, c).

Initialisation (so training starts at ΔW = 0 and learns, as LoRA's does): B = 0; C2 ~ N(0, 1/d2)
and C1 ~ N(0, 1/(3·χ·d1)), drawn from torch's global generator in module order, so that an entry
of A_MPS has variance χ·(1/(3χd1))·(1/d2) = 1/(3·d_in), that of PEFT's kaiming-uniform lora_A.
With B = 0 the first step moves B only (as in LoRA), after which the cores get gradients too.

Adapter folder (a ``checkpoint-N/``)::

    mps_adapter_config.json      method, r, chi, d1, d2 (per module when they differ), alpha,
                                 target_modules, modules, base_model_name_or_path
    mps_adapter_model.safetensors  <module>.mps_B (out × r), <module>.mps_C1 (r × d1 × χ),
                                 <module>.mps_C2 (χ × d2), float32
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from lab.checkpoints.mps import MPS_CONFIG, MPS_WEIGHTS
from lab.errors import FormatError, InputError, MatchError
from lab.finetune.mps_layout import choose_split


class MPSLinear(nn.Module):
    """A frozen ``nn.Linear`` plus the MPS update (α/r)·B·A_MPS."""

    def __init__(self, base: nn.Linear, r: int, chi: int, d1: int, d2: int, alpha: float):
        super().__init__()
        if d1 * d2 != base.in_features:
            raise ValueError(f"d1·d2 = {d1 * d2} != in_features {base.in_features}")
        self.base_layer = base
        base.requires_grad_(False)
        self.r, self.chi, self.d1, self.d2, self.alpha = r, chi, d1, d2, float(alpha)
        self.scale = self.alpha / r
        w = base.weight
        self.mps_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=w.dtype))
        self.mps_C1 = nn.Parameter(torch.randn(r, d1, chi, dtype=w.dtype) / math.sqrt(3 * chi * d1))
        self.mps_C2 = nn.Parameter(torch.randn(chi, d2, dtype=w.dtype) / math.sqrt(d2))

    def a_mps(self) -> torch.Tensor:
        """A_MPS (r × d_in), built from the cores (for tests and reading; the forward never builds it)."""
        return torch.einsum("aic,cj->aij", self.mps_C1, self.mps_C2).reshape(self.r, self.d1 * self.d2)

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (α/r)·B·A_MPS (out × in)."""
        return self.scale * (self.mps_B @ self.a_mps())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        t = x.reshape(*lead, self.d1, self.d2) @ self.mps_C2.T  # (..., d1, χ): Σ_i2 x[i1, i2]·C2[c, i2]
        a = t.reshape(*lead, self.d1 * self.chi) @ self.mps_C1.reshape(self.r, self.d1 * self.chi).T  # (..., r)
        return self.base_layer(x) + self.scale * (a @ self.mps_B.T)

    def trainable_parameters(self) -> int:
        return self.mps_B.numel() + self.mps_C1.numel() + self.mps_C2.numel()


def _targets(model: nn.Module, targets: list[str]) -> list[str]:
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n
             and (targets == ["all"] or any(n == t or n.endswith("." + t) for t in targets))]
    if targets == ["all"]:
        names = [n for n in names if not n.endswith(("pooler.dense", "lm_head"))]
    return names


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def wrap_mps(model: nn.Module, targets: list[str], r: int, chi: int, alpha: float, d1: int | None = None,
             *, where: str = "") -> list[str]:
    """Replace every target ``nn.Linear`` of ``model`` with an :class:`MPSLinear` (in module order,
    so a seed fixes every core); freeze everything else. Returns the wrapped module names.

    InputError (one line) when an input dimension has no usable split, MatchError when no module matches.
    """
    if r < 1 or chi < 1:
        raise InputError(f"--r and --chi must be at least 1 (got r = {r}, chi = {chi})")
    model.requires_grad_(False)
    names = _targets(model, targets)
    if not names:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise MatchError(f"{where}: --target-modules {','.join(targets)} match no linear module; this model's linear layers are named {', '.join(linear)}")
    for name in names:
        base = model.get_submodule(name)
        s1, s2 = choose_split(base.in_features, d1, where=f"{where} module '{name}'")
        _replace(model, name, MPSLinear(base, r, chi, s1, s2, alpha))
    return names


def mps_modules(model: nn.Module) -> dict[str, MPSLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, MPSLinear)}


def save_mps(model: nn.Module, path: Path, *, base_path: str, targets: list[str]) -> None:
    """An MPS adapter folder at ``path``: config json and safetensors of every module's B, C1, C2."""
    from safetensors.torch import save_file

    mods = mps_modules(model)
    first = next(iter(mods.values()))
    tensors = {}
    for name, m in mods.items():
        for part in ("mps_B", "mps_C1", "mps_C2"):
            tensors[f"{name}.{part}"] = getattr(m, part).detach().to(torch.float32).contiguous().clone()
    splits = {name: [m.d1, m.d2] for name, m in mods.items()}
    config = {
        "method": "mps", "r": first.r, "chi": first.chi, "alpha": first.alpha,
        "d1": first.d1, "d2": first.d2,
        # modules whose input splits differently from the first (d_in differs) carry their own
        "split_pattern": {n: s for n, s in splits.items() if s != [first.d1, first.d2]},
        "target_modules": targets, "modules": list(mods), "base_model_name_or_path": base_path,
        "paper": "arXiv 2601.06788 (MPS Adaptation)",
    }
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / MPS_WEIGHTS), metadata={"format": "pt"})
    (path / MPS_CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def load_mps(model: nn.Module, path: str | Path) -> nn.Module:
    """``model`` with the MPS adapter at ``path`` applied (wrapped in place, weights loaded exactly)."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        config = json.loads((path / MPS_CONFIG).read_text())
        tensors = load_file(str(path / MPS_WEIGHTS))
    except (OSError, ValueError) as e:
        raise FormatError(f"{path}: cannot read the MPS adapter ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    for name in config["modules"]:
        try:
            base = model.get_submodule(name)
        except AttributeError:
            raise MatchError(f"{path / MPS_WEIGHTS}: module '{name}' is not in the model; pass the base the adapter was trained on") from None
        d1, d2 = config.get("split_pattern", {}).get(name, [config["d1"], config["d2"]])
        m = MPSLinear(base, config["r"], config["chi"], d1, d2, config["alpha"])
        with torch.no_grad():
            for part in ("mps_B", "mps_C1", "mps_C2"):
                getattr(m, part).copy_(tensors[f"{name}.{part}"])
        _replace(model, name, m)
    return model
