"""A PEFT LoRA ``adapter_config.json``: rank and scale of every module, as PEFT computes them.

Scale (Hu et al. 2021, "LoRA", eq. 3: ΔW = (α/r)·B·A): ``lora_alpha / r``; with
``use_rslora`` (Kalajdzievski 2023, "A Rank Stabilization Scaling Factor for Fine-Tuning with
LoRA") ``lora_alpha / sqrt(r)``. ``rank_pattern`` / ``alpha_pattern`` override r and α per
module; a key matches a module the way ``peft.utils.other.get_pattern_key`` does it:
``re.match(rf"(.*\\.)?({key})$", module)``, first matching key in dict order wins.

Also what every reader of a PEFT or MPS config uses: :func:`read_json`, the field checks
(:func:`positive_int`, :func:`finite_number`), :func:`shown` for quoting a value in a message, and
:func:`peft_type`, the type any PEFT adapter's config declares.
"""

from __future__ import annotations

import json
import math
import re
import sys
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
        raw = read_json(path, "fix or re-save the adapter")
        if not isinstance(raw, dict):
            raise FormatError(f"{path}: expected a JSON object, got {shown(raw)}")
        peft_type = raw.get("peft_type", "LORA")
        if not isinstance(peft_type, str) or peft_type.upper() != "LORA":
            raise FormatError(f"{path}: peft_type {shown(peft_type)} is not supported (lab reads LoRA and DoRA adapters)")
        layers = raw.get("layers_to_transform")
        patterns = {name: _patterns(path, raw, name) for name in ("rank_pattern", "alpha_pattern")}
        return cls(
            path=path,
            r=positive_int(path, "r", raw.get("r")),
            lora_alpha=finite_number(path, "lora_alpha", raw.get("lora_alpha")),
            use_rslora=_flag(path, raw, "use_rslora"),
            use_dora=_flag(path, raw, "use_dora"),
            fan_in_fan_out=_flag(path, raw, "fan_in_fan_out"),
            rank_pattern={k: positive_int(path, f"rank_pattern[{k!r}]", v) for k, v in patterns["rank_pattern"].items()},
            alpha_pattern={k: finite_number(path, f"alpha_pattern[{k!r}]", v) for k, v in patterns["alpha_pattern"].items()},
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
        """s in ΔW = s·B·A: α/r, or α/√r with rsLoRA (per-module r and α).

        r ≥ 1, so a finite α never gives an infinite s; a nonzero α whose s underflows (to zero or
        to a subnormal float that has lost its precision) is a FormatError naming the field,
        never a silently wrong scale.
        """
        r, alpha = self.rank(module), self.alpha(module)
        s = alpha / math.sqrt(r) if self.use_rslora else alpha / r
        if alpha != 0 and abs(s) < sys.float_info.min:
            raise FormatError(
                f"{self.path}: {self.scale_source(module)} gives the scale {s!r} for '{module}', below float64's "
                f"normal range (~{sys.float_info.min:.1e}); the update would be lost to underflow"
            )
        return s

    def scale_source(self, module: str) -> str:
        """Which fields of the file make ``module``'s scale, e.g. ``'lora_alpha' = 16 / 'r' = 8``."""
        a_key, r_key = pattern_key(self.alpha_pattern, module), pattern_key(self.rank_pattern, module)
        alpha = f"'alpha_pattern'[{a_key!r}] = {self.alpha(module)!r}" if a_key is not None else f"'lora_alpha' = {self.lora_alpha!r}"
        rank = f"'rank_pattern'[{r_key!r}] = {self.rank(module)}" if r_key is not None else f"'r' = {self.r}"
        return f"{alpha} / {'√' if self.use_rslora else ''}{rank}"


def pattern_key(patterns: dict[str, object], module: str) -> str | None:
    """The first key of ``patterns`` matching ``module`` as PEFT's ``get_pattern_key`` matches it."""
    for key in patterns:
        if _peft_pattern(key).match(module):
            return key
    return None


def _peft_pattern(key: str) -> re.Pattern:
    """``key`` embedded the way PEFT embeds it (a key may compile alone and not there, e.g. ``(?i)q``)."""
    return re.compile(rf"(.*\.)?({key})$")


def read_json(path: Path, advice: str) -> object:
    """The JSON value in ``path``; FormatError naming the file for anything json cannot read.

    Besides malformed text this covers what ``json`` raises other than JSONDecodeError: integers
    of more than 4300 digits (ValueError) and nesting deeper than the interpreter's recursion
    limit (RecursionError).
    """
    try:
        return json.loads(path.read_bytes())
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = "nested too deeply" if isinstance(e, RecursionError) else _first_line(str(e))
        raise FormatError(f"{path}: invalid JSON ({reason}); {advice}") from None


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else "unreadable"


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: messages quote user input on one short line."""
    try:
        text = repr(value)
    except ValueError:  # an int too long for repr (more than 4300 digits)
        text = f"<an integer of about {value.bit_length() * 0.30103:.0f} digits>" if isinstance(value, int) else "<unprintable>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def peft_type(config: Path) -> str:
    """``peft_type`` of an adapter_config.json, upper case ("LORA" when absent, as PEFT reads it)."""
    raw = read_json(config, "fix or re-save the adapter")
    if not isinstance(raw, dict):
        raise FormatError(f"{config}: expected a JSON object, got {shown(raw)}")
    value = raw.get("peft_type", "LORA")
    if not isinstance(value, str) or not value.strip():
        raise FormatError(f"{config}: 'peft_type' must be the name of a PEFT method, got {shown(value)}")
    return value.upper()


def positive_int(path: Path, name: str, value: object) -> int:
    """A JSON field that must be a positive integer (``true`` is not one); FormatError naming the file and field."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise FormatError(f"{path}: '{name}' must be a positive integer, got {shown(value)}")
    return value


def finite_number(path: Path, name: str, value: object) -> float:
    """A finite float64 from a JSON field that must be a number (an integer beyond float64's range is refused, not rounded to inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FormatError(f"{path}: '{name}' must be a number, got {shown(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise FormatError(f"{path}: '{name}' must be a finite number within float64's range, got {shown(value)}")
    return number


def _flag(path: Path, raw: dict, name: str) -> bool:
    """A true/false field (absent or null: false). Strings such as "false" are refused, not read as true."""
    value = raw.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise FormatError(f"{path}: '{name}' must be true or false, got {shown(value)}")
    return value


def _patterns(path: Path, raw: dict, name: str) -> dict[str, object]:
    """``rank_pattern`` / ``alpha_pattern``: an object (or null) whose keys are regexes PEFT can use."""
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FormatError(f"{path}: '{name}' must be an object of module pattern -> value, got {shown(value)}")
    for key in value:
        try:
            _peft_pattern(key)
        except (re.error, RecursionError, OverflowError) as e:
            raise FormatError(f"{path}: {name} key {shown(key)} is not a valid module pattern ({e})") from None
    return value


def _layer_list(path: Path, value: object) -> list[int]:
    values = [value] if isinstance(value, int) else value
    if not isinstance(values, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise FormatError(f"{path}: 'layers_to_transform' must be an integer or a list of integers, got {shown(value)}")
    return values
