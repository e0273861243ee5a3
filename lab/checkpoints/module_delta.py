"""A module read turned into Deltas: the LoRA/DoRA and full-model readers, the base weight, and the
step every format's reader ends with (a read's matrix cut into its parts' Deltas).

Runs wherever the work runs (this process or a Dask worker), from a picklable
:class:`~lab.checkpoints.records.ModuleRead`; :func:`lab.checkpoints.formats.read_module` picks the
format's reader (:data:`lab.checkpoints.formats.FORMATS`) and calls :func:`deltas` on what it returns.
Small matrices are read whole into float64; a dense update larger than ``stream_bytes`` in float64 (an
LLM's embedding, MLP weights of large models) is not read at all here: its Delta holds a
:class:`~lab.sources.MatrixSource` that the blocked kernels read in row or column blocks, so memory stays
bounded by the block size.
"""

from __future__ import annotations

import numpy as np

from lab.checkpoints.dora import NOTE_NO_BASE, dora_update
from lab.checkpoints.loader import TensorLoader
from lab.checkpoints.records import ModuleRead, Part
from lab.deltas import Delta, Factors, Kron
from lab.errors import FormatError

STREAM_BYTES = 64 << 20  # dense updates above this many bytes of float64 are streamed


def _streams(spec: ModuleRead, stream_bytes: int | None, *infos) -> bool:
    return (stream_bytes is not None and spec.stored_bytes > stream_bytes and not spec.conv1d
            and all(p.rows is None for p in spec.parts)
            and all(i is not None and i.file.suffix == ".safetensors" for i in infos))


def read_full(spec: ModuleRead, loader: TensorLoader, stream_bytes: int | None = STREAM_BYTES):
    """(ΔW = W_ft − W, W, note) of a full checkpoint's module, float64 (out, in); streamed above ``stream_bytes``."""
    if _streams(spec, stream_bytes, spec.tensor, spec.base):
        from lab.checkpoints.ranges import TensorRanges
        from lab.sources import DifferenceSource

        # NaN/inf are found while streaming: the engine's first pass (‖ΔW‖_F) raises unless allowed
        W = TensorRanges(spec.base)
        return DifferenceSource(TensorRanges(spec.tensor), W), W, ""
    W_ft, W = loader.get(spec.tensor, spec.allow_nonfinite), loader.get(spec.base, spec.allow_nonfinite)
    if spec.conv1d:  # Conv1D stores (in, out); a Delta is (out, in)
        W_ft, W = W_ft.T, W.T
    return np.ascontiguousarray(W_ft - W), np.ascontiguousarray(W), ""


def base_weight(spec: ModuleRead, loader: TensorLoader, stream_bytes: int | None = None):
    """The module's base weight W, float64, in the (out, in) layout (Conv1D's stored (in, out) transposed).

    ``stream_bytes``: for a ΔW held as factors, so that nothing of the module's size need be in
    memory, a W larger than this many bytes of float64 is streamed from its safetensors file (a
    :class:`~lab.checkpoints.ranges.TensorRanges` the blocked kernels read), so an LLM's embedding or
    MLP weight never sits whole in float64. None: always in memory (a dense or DoRA update needs W whole).
    """
    if _streams(spec, stream_bytes, spec.base):
        from lab.checkpoints.ranges import TensorRanges

        return TensorRanges(spec.base)
    W = loader.get(spec.base, spec.allow_nonfinite)
    return np.ascontiguousarray(W.T) if spec.conv1d else W


def read_adapter(spec: ModuleRead, loader: TensorLoader, stream_bytes: int | None = STREAM_BYTES):
    """(factors s·B·A, or DoRA's effective update with the base, W or None, note) of a PEFT LoRA/DoRA module."""
    A, B = loader.get(spec.A, spec.allow_nonfinite), loader.get(spec.B, spec.allow_nonfinite)
    if spec.embedding:  # PEFT's update is (B·A)ᵀ·s in the table's layout: factors Aᵀ, Bᵀ
        A, B = np.ascontiguousarray(B.T), np.ascontiguousarray(A.T)
    factors = Factors(B, A, spec.scale)
    if factors.is_finite() and not np.isfinite(factors.fro_norm()):  # finite s, B, A; s·B·A beyond float64
        raise FormatError(
            f"{spec.scale_source or spec.A.file} makes ‖ΔW‖_F of '{spec.module}' ({spec.B.key} · {spec.A.key}) "
            f"overflow float64 (s = {spec.scale!r}); fix the scale"
        )
    W = None if spec.base is None else base_weight(spec, loader, None if spec.use_dora else stream_bytes)
    if not spec.use_dora:
        return factors, W, ""
    if W is None:
        return factors, None, NOTE_NO_BASE
    magnitude = loader.get(spec.magnitude, spec.allow_nonfinite)
    return dora_update(W, factors.B, factors.A, factors.scale, magnitude, per_column=spec.embedding), W, ""


def deltas(spec: ModuleRead, matrix, base, note: str, fields: dict | None = None) -> list[Delta]:
    """The Deltas of ``spec`` from what its format's reader returned: one, or one per part of a fused
    projection (its rows of ``matrix`` and ``base``); ``fields`` are more Delta fields (AdaLoRA's
    ``pruned_ranks``)."""
    return [_part(spec, p, matrix, base, note, fields) for p in spec.parts]


def _part(spec: ModuleRead, part: Part, matrix, base, note: str, fields: dict | None = None) -> Delta:
    if part.rows is not None:
        start, stop = part.rows
        matrix = matrix.rows(start, stop) if isinstance(matrix, (Factors, Kron)) else matrix[start:stop]
        base = None if base is None else base[start:stop]
    note = "; ".join(filter(None, [note, part.note]))
    role = part.role if part.rows is not None or part.note else spec.role
    return Delta(module=part.module, layer=spec.layer, role=role, kind=spec.kind, matrix=matrix, base=base, note=note,
                 params=spec.params(part.rows), **(fields or {}))
