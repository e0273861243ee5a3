"""LoKr read as a Kronecker product: ΔW = s·kron(W1, W2), W1 and W2 straight from the file, never multiplied out.

PEFT 0.21 (``peft/tuners/lokr/layer.py``), for an ``nn.Linear`` with out = a·c and in = b·d (LoKr's
``factorization`` of each dimension by ``decompose_factor``):

* W1 (a×b) is ``lokr_w1``, or ``lokr_w1_a`` (a×r) · ``lokr_w1_b`` (r×b) when ``decompose_both`` and
  r < max(a, b)/2; W2 (c×d) is ``lokr_w2``, or ``lokr_w2_a`` (c×r) · ``lokr_w2_b`` (r×d) when
  r < max(c, d)/2. A decomposed factor is kept as :class:`~lab.deltas.Factors` (scale 1).
* ``get_delta_weight`` = ``make_kron(w1, w2, scaling)`` = scaling·torch.kron(w1, w2), reshaped to the
  weight's shape: for a Linear that is already its (out, in) layout, lab's own. ``scaling`` = α/r with
  the config's ``rank_pattern``/``alpha_pattern``; it is read from the layer PEFT built in the general
  path's skeleton, so it is PEFT's by construction.

LoKr has no ``fan_in_fan_out``: PEFT adapts ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d`` only (GPT-2's
``Conv1D`` is refused by PEFT itself). Convolutions have no 2-D weight and never reach a reader; any
layer that is not an ``nn.Linear`` returns None here, and the general path reads it through PEFT.

The result is a :class:`~lab.deltas.Kron`; the probes use its structure (:mod:`lab.kernels.kron`).
"""

from __future__ import annotations

import numpy as np

from lab.checkpoints.loader import TensorLoader
from lab.checkpoints.records import ModuleRead
from lab.deltas import Factors, Kron
from lab.errors import FormatError, ShapeError

NAMES = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b")


def read(spec: ModuleRead, loader: TensorLoader, stream_bytes: int | None = None):  # W whole: the --base alignment multiplies a Kron out anyway
    """(Kron ΔW (out, in), the base weight W (out, in), note) of one LoKr module, float64; None for a
    layer that is not an ``nn.Linear`` (the general path reads it)."""
    from lab.checkpoints.peft_skeleton import ADAPTER

    peft = spec.peft
    weights = peft.tensors[0].file
    layer = _linear_layer(spec)
    if layer is None:
        return None
    scale = float(layer.scaling[ADAPTER])
    found = {}
    for info in peft.tensors:
        name = info.key.rsplit(".", 1)[-1]
        if name not in NAMES:
            raise FormatError(f"{info.file}: tensor '{info.key}' is not a LoKr weight of a Linear layer "
                              f"(expected one of {', '.join(NAMES)})")
        found[name] = info
    w1 = _factor(found, "lokr_w1", spec, loader)
    w2 = _factor(found, "lokr_w2", spec, loader)
    if not np.isfinite(scale):  # alpha: Infinity or NaN in the config
        raise FormatError(f"{peft.config}: the LoKr scale of '{peft.module}' is {scale} (from the config's alpha); "
                          "it must be a finite number")
    matrix = Kron(w1, w2, scale)
    if matrix.shape != tuple(spec.shape):
        raise ShapeError(f"{weights}: LoKr factors of '{peft.module}' make kron(W1 {list(w1.shape)}, W2 {list(w2.shape)}) "
                         f"= {list(matrix.shape)}, but the layer's weight is {list(spec.shape)}")
    if matrix.is_finite() and not np.isfinite(matrix.fro_norm()):  # finite factors, s·kron(W1, W2) beyond float64
        raise FormatError(f"{weights}: the LoKr update of '{peft.module}' overflows float64 (scale {scale!r}); "
                          "fix alpha or the weights")
    W = loader.get(spec.base, spec.allow_nonfinite)
    return matrix, W, ""


def rank_bound(spec: ModuleRead, rows: int) -> int | None:
    """The rank bound of :func:`read`'s Kron (rank(W1)·rank(W2) structurally) from the stored shapes
    alone, for planning the run's controls; None where the Delta is not that Kron: a non-Linear layer,
    or a block of a fused projection (dense when it cuts across W2's rows)."""
    if rows != spec.shape[0] or _linear_layer(spec) is None:
        return None
    shapes = {info.key.rsplit(".", 1)[-1]: tuple(info.shape) for info in spec.peft.tensors}
    bound = 1
    for name in ("lokr_w1", "lokr_w2"):
        if name in shapes and len(shapes[name]) == 2:
            bound *= min(shapes[name])
        elif len(shapes.get(f"{name}_a", ())) == 2 and len(shapes.get(f"{name}_b", ())) == 2:
            bound *= min(*shapes[f"{name}_a"], shapes[f"{name}_b"][1])
        else:
            return None  # read() says what is wrong
    return bound


def _linear_layer(spec: ModuleRead):
    """The module's LoKr layer in the general path's (cached) skeleton when it adapts an ``nn.Linear``, else None."""
    import torch

    from lab.checkpoints.peft_skeleton import skeleton, tuner_layers

    peft = spec.peft
    model, _ = skeleton(peft.config, peft.base_config, str(peft.tensors[0].file))
    layer = tuner_layers(model)[peft.module]
    return layer if not spec.conv1d and isinstance(layer.get_base_layer(), torch.nn.Linear) else None


def _factor(found: dict, name: str, spec: ModuleRead, loader: TensorLoader) -> np.ndarray | Factors:
    """W1 or W2: the whole tensor, or its two factors ``_a``·``_b``."""
    whole, a, b = found.get(name), found.get(f"{name}_a"), found.get(f"{name}_b")
    file = spec.peft.tensors[0].file
    if whole is not None and a is None and b is None:
        return _matrix(whole, loader, spec.allow_nonfinite)
    if whole is None and a is not None and b is not None:
        wa, wb = _matrix(a, loader, spec.allow_nonfinite), _matrix(b, loader, spec.allow_nonfinite)
        if wa.shape[1] != wb.shape[0]:
            raise ShapeError(f"{file}: '{a.key}' {list(wa.shape)} and '{b.key}' {list(wb.shape)} do not multiply")
        return Factors(B=wa, A=wb, scale=1.0)  # PEFT's w = w_a @ w_b
    held = ", ".join(k for k in (name, f"{name}_a", f"{name}_b") if k in found) or "none of them"
    raise FormatError(f"{file}: LoKr module '{spec.peft.module}' needs {name}, or {name}_a and {name}_b (it holds {held})")


def _matrix(info, loader: TensorLoader, allow_nonfinite: bool) -> np.ndarray:
    m = loader.get(info, allow_nonfinite)
    if m.ndim != 2:
        raise ShapeError(f"{info.file}: tensor '{info.key}' is {list(m.shape)}; a LoKr factor of a Linear layer is 2-D")
    return np.ascontiguousarray(m)
