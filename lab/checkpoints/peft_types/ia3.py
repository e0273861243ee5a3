"""(IA)³ (Liu et al., 2022): a learned scaling of a layer's inputs or outputs, read as ΔW = W·diag(l − 1)
or diag(l − 1)·W from the base weight directly (dense, full rank bound), without PEFT.

PEFT 0.21's ``ia3.Linear.merge`` (peft/tuners/ia3/layer.py) sets W ← W ⊙ transpose(l, fan_in_fan_out)
with ``ia3_l`` of shape (1, in) for a module listed in ``feedforward_modules`` (it scales the layer's
input: W·diag(l)) and (out, 1) otherwise (it scales the output: diag(l)·W). For a GPT-2 Conv1D
(stored (in, out), ``fan_in_fan_out`` forced on) the transpose makes the same scaling of the same
features, so in lab's (out, in) layout

    ΔW = W·diag(l − 1)   (feedforward: l scales the columns, the inputs)
    ΔW = diag(l − 1)·W   (otherwise: l scales the rows, the outputs)

Which one the file holds is read from l's stored shape, which PEFT's skeleton checked against
``feedforward_modules``. The merge also scales a non-feedforward layer's bias by l; lab analyses
weights, so that is not part of ΔW. The update needs the base weight (planning refuses an IA3
adapter without --base) and has no structural rank bound below min(rows, cols): rank(ΔW) can be
full, so it is dense.
"""

from __future__ import annotations

from lab.checkpoints.loader import TensorLoader
from lab.checkpoints.peft_types import common
from lab.checkpoints.records import ModuleRead
from lab.errors import ShapeError


def read(spec: ModuleRead, loader: TensorLoader, stream_bytes: int | None = common.STREAM_BYTES):
    """(dense ΔW = W·diag(l − 1) or diag(l − 1)·W, the base weight, note) of one IA3 module."""
    (info,) = common.require(spec, common.tensors(spec), "ia3_l")
    l = common.get(spec, loader, info)
    rows, cols = spec.shape
    W = common.base_weight(spec, loader)
    if l.shape == (1, cols):
        side = "inputs"  # l (1, in) broadcasts over W's columns
    elif l.shape == (rows, 1):
        side = "outputs"  # l (out, 1) broadcasts over W's rows
    else:
        raise ShapeError(f"{info.file}: tensor '{info.key}' is {list(l.shape)} but module '{spec.peft.module}' "
                         f"({rows}×{cols}) needs [1, {cols}] (feedforward) or [{rows}, 1]")
    delta = W * (l - 1.0)
    return common.checked_dense(spec, delta), W, f"ia3: ΔW = W scaled on its {side} by l − 1"
