"""A PEFT LoRA ``adapter_config.json``: rank and scale of every module, as PEFT computes them.

Scale (Hu et al. 2021, "LoRA", eq. 3: ΔW = (α/r)·B·A): ``lora_alpha / r``; with
``use_rslora`` (Kalajdzievski 2023, "A Rank Stabilization Scaling Factor for Fine-Tuning with
LoRA") ``lora_alpha / sqrt(r)``. ``rank_pattern`` / ``alpha_pattern`` override r and α per
module; a key matches a module the way ``peft.utils.other.get_pattern_key`` does it:
``re.match(rf"(.*\\.)?({key})$", module)``, first matching key in dict order wins.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import FormatError

CONFIG_NAME = "adapter_config.json"


@dataclass(frozen=True)
class AdapterConfig:
    """What lab needs from adapter_config.json."""

    path: Path
    r: int
    lora_alpha: float
    use_rslora: bool = False
    use_dora: bool = False
    fan_in_fan_out: bool = False
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    layers_to_transform: tuple[int, ...] | None = None

    @classmethod
    def read(cls, path: Path) -> AdapterConfig:
        """The config at ``path``; FormatError naming the file and field when it is invalid."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FormatError(f"{path}: invalid JSON ({e}); fix or re-save the adapter") from None
        if not isinstance(raw, dict):
            raise FormatError(f"{path}: expected a JSON object")
        peft_type = raw.get("peft_type", "LORA")
        if str(peft_type).upper() != "LORA":
            raise FormatError(f"{path}: peft_type {peft_type!r} is not supported (lab reads LoRA and DoRA adapters)")
        layers = raw.get("layers_to_transform")
        for name in ("rank_pattern", "alpha_pattern"):
            for key in _dict(path, raw, name):
                try:
                    re.compile(key)
                except re.error as e:
                    raise FormatError(f"{path}: {name} key {key!r} is not a valid regular expression ({e})") from None
        return cls(
            path=path,
            r=_positive_int(path, "r", raw.get("r")),
            lora_alpha=_number(path, "lora_alpha", raw.get("lora_alpha")),
            use_rslora=bool(raw.get("use_rslora", False)),
            use_dora=bool(raw.get("use_dora", False)),
            fan_in_fan_out=bool(raw.get("fan_in_fan_out", False)),
            rank_pattern={str(k): _positive_int(path, f"rank_pattern[{k!r}]", v) for k, v in _dict(path, raw, "rank_pattern").items()},
            alpha_pattern={str(k): _number(path, f"alpha_pattern[{k!r}]", v) for k, v in _dict(path, raw, "alpha_pattern").items()},
            layers_to_transform=None if layers is None else tuple(_layer_list(path, layers)),
        )

    def rank(self, module: str) -> int:
        """r of ``module`` (its rank_pattern override, else ``r``)."""
        key = pattern_key(self.rank_pattern, module)
        return self.rank_pattern[key] if key is not None else self.r

    def alpha(self, module: str) -> float:
        """α of ``module`` (its alpha_pattern override, else ``lora_alpha``)."""
        key = pattern_key(self.alpha_pattern, module)
        return self.alpha_pattern[key] if key is not None else self.lora_alpha

    def scale(self, module: str) -> float:
        """s in ΔW = s·B·A: α/r, or α/√r with rsLoRA (per-module r and α)."""
        r, alpha = self.rank(module), self.alpha(module)
        return alpha / math.sqrt(r) if self.use_rslora else alpha / r


def pattern_key(patterns: dict[str, object], module: str) -> str | None:
    """The first key of ``patterns`` matching ``module`` as PEFT's ``get_pattern_key`` matches it."""
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module):
            return key
    return None


def _positive_int(path: Path, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise FormatError(f"{path}: '{name}' must be a positive integer, got {value!r}")
    return value


def _number(path: Path, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FormatError(f"{path}: '{name}' must be a number, got {value!r}")
    return float(value)


def _dict(path: Path, raw: dict, name: str) -> dict:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        raise FormatError(f"{path}: '{name}' must be an object of module pattern -> value, got {value!r}")
    return value


def _layer_list(path: Path, value: object) -> list[int]:
    values = [value] if isinstance(value, int) else value
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise FormatError(f"{path}: 'layers_to_transform' must be an integer or a list of integers, got {value!r}")
    return values
