"""AdaLoRA (Zhang et al., 2023): ΔW = P·diag(λ)·Q as factors, with the ranks its budget pruned dropped.

PEFT 0.21's ``SVDLinear.get_delta_weight`` (peft/tuners/adalora/layer.py) is

    ΔW = B · (A ⊙ E) · scaling / (ranknum + 1e-5)

with B = ``lora_B`` (out × r), A = ``lora_A`` (r × in), E = ``lora_E`` (r × 1, the singular values λ,
broadcast over A's rows), in the (out, in) layout whatever ``fan_in_fan_out`` says (PEFT transposes
the product into a Conv1D's stored (in, out) layout; lab's layout is (out, in) for both).

* ``scaling`` is ``lora_alpha``, or the module's rank when ``lora_alpha`` ≤ 0 (PEFT's
  ``update_layer``: that rank is the number of ranks the module was built or resized with, which
  is the number of ranks stored, since the file's shapes were checked against PEFT's skeleton).
* ``ranknum`` is not saved: PEFT sets it to ``init_r`` when it builds the layer and keeps that value
  when it resizes a module to the saved ``rank_pattern`` (``resize_modules_by_rank_pattern`` copies
  the old ranknum back), so it is ``init_r`` for every module, also for one saved with fewer ranks.
  (A module resized to no rank at all gets ranknum 0 and no ranks: ΔW = 0 either way.)

The rank mask: RankAllocator prunes a rank by setting its λ to 0; a file saved with a
``rank_pattern`` holds only the kept ranks, one saved before (a mid-training checkpoint) holds λ = 0
for the pruned ones. Both are dropped here, so the Factors' rank (``rank_bound``) is the number of
kept ranks and ``pruned_ranks`` = ``init_r`` − kept. Exact: a rank with λ = 0 contributes nothing.
"""

from __future__ import annotations

import numpy as np

from lab.checkpoints.loader import TensorLoader
from lab.checkpoints.peft_types import common
from lab.checkpoints.records import ModuleRead
from lab.deltas import Factors


def read(spec: ModuleRead, loader: TensorLoader, stream_bytes: int | None = common.STREAM_BYTES):
    """(Factors of the kept ranks, the base weight, note, {"pruned_ranks": n}) of one AdaLoRA module."""
    found = common.tensors(spec)
    if any(name.startswith("lora_embedding") for name in found):
        return None  # not a Linear/Conv1D layer: the general path
    a_info, b_info, e_info = common.require(spec, found, "lora_A", "lora_B", "lora_E")
    A, B, E = (common.get(spec, loader, i) for i in (a_info, b_info, e_info))
    rows, cols = spec.shape
    r = E.shape[0]
    common.check_shape(spec, e_info, E, (r, 1))
    common.check_shape(spec, a_info, A, (r, cols))
    common.check_shape(spec, b_info, B, (rows, r))
    cfg = common.config(spec)
    init_r = int(cfg.init_r)
    alpha = float(cfg.lora_alpha)
    scaling = alpha if alpha > 0 else float(r)
    ranknum = float(init_r) if r > 0 else 0.0
    keep = E[:, 0] != 0  # NaN is kept: --allow-nonfinite shows it
    kept = int(keep.sum())
    factors = Factors(np.ascontiguousarray(B[:, keep]), np.ascontiguousarray(A[keep] * E[keep]), scaling / (ranknum + 1e-5))
    pruned = max(init_r - kept, 0)
    note = f"adalora: {kept} of {init_r} ranks kept"
    return common.checked(spec, factors), common.base_weight(spec, loader, stream_bytes), note, {"pruned_ranks": pruned}


def rank_bound(spec: ModuleRead, rows: int) -> int | None:
    """The ranks stored in the file (``lora_E``'s rows), for planning the run's controls without reading
    data: :func:`read` drops the ranks whose λ is 0 too, which only a file saved before the final
    resize holds (its Delta's bound is then lower than this one). None for a module with no rank left
    (ΔW = 0: the run has no control of rank 0 to draw)."""
    info = common.tensors(spec).get("lora_E")
    return int(info.shape[0]) if info is not None and len(info.shape) == 2 and info.shape[0] > 0 else None
