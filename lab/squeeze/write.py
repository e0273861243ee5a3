"""Writing a squeeze: the PEFT adapter folder and the rows of the ``squeeze`` table.

The adapter is written by :func:`lab.merge.adapters.write_adapter` (scale 1: ``r`` = ``lora_alpha``
= the largest kept rank, ``rank_pattern`` = ``alpha_pattern`` for modules kept at another rank),
so PEFT's update is exactly the kept factors, whatever the input's scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lab.deltas import Factors
from lab.merge.adapters import stored, write_adapter
from lab.kernels.merging import errors as factored_errors
from lab.squeeze.compress import Squeezed
from lab.squeeze.targets import Input

TABLE = "squeeze"


@dataclass
class _Stored:
    """A squeezed module in PEFT's stored layout, as :func:`write_adapter` takes it."""

    module: str
    merged: Factors
    embedding: bool


def write_squeezed(out: Path, source: Input, squeezed: list[Squeezed], overwrite: bool = False) -> None:
    """The PEFT adapter at ``out`` (written to a temporary folder and renamed).

    The kept factors are in the update's (rows, cols) layout; an embedding's update is the table's
    (num_embeddings, dim) = (B·A)ᵀ of PEFT's lora_embedding_B (dim × k) and lora_embedding_A
    (k × num_embeddings), so its stored factors are the transposes, swapped.
    """
    dtype = source.dtype if source.dtype in ("F32", "F64") else "F32"  # never half precision
    stored_layout = [_Stored(sq.module, Factors(sq.merged.A.T, sq.merged.B.T, 1.0) if sq.embedding else sq.merged, sq.embedding)
                     for sq in squeezed]
    write_adapter(out, stored_layout, source.template, dtype, overwrite=overwrite)


def squeeze_rows(name: str, run: str, source: Input, squeezed: list[Squeezed]) -> list[dict]:
    """One row per module of the squeezed adapter ``name``."""
    dtype = source.dtype if source.dtype in ("F32", "F64") else "F32"
    rows = []
    for sq in squeezed:
        t = sq.target
        if isinstance(t.update, Factors):
            stored_error = factored_errors(stored(sq.merged, dtype), t.update).rel_fro
        else:
            M = t.update
            stored_error = float(np.linalg.norm(M - stored(sq.merged, dtype).to_dense()) / np.linalg.norm(M))
        rows.append({
            "run": run, "checkpoint": name, "step": None, "module": t.module, "layer": t.layer, "role": t.role,
            "source": str(source.path), "source_kind": t.kind, "method": sq.method,
            "rank_in": t.rank_in, "k": sq.k, "energy_target": sq.energy_target, "kept_energy": sq.kept_energy,
            "rel_fro_error": sq.rel_fro_error, "optimal_rel_fro_error": sq.optimal_rel_fro_error,
            "rel_spectral_error": sq.rel_spectral_error, "stored_rel_fro_error": stored_error,
            "params_in": t.params, "params_out": int(sq.merged.B.size + sq.merged.A.size), "seconds": sq.seconds,
        })
    return rows


def write_squeeze_table(results: Path, run: str, rows: list[dict]) -> Path:
    """Add the rows to RESULTS/RUN/squeeze.parquet (earlier rows of the same output replaced)."""
    from lab.store.manifest import now, write_manifest
    from lab.store.writer import upsert_table

    path, table = upsert_table(results, run, TABLE, rows, "checkpoint")
    write_manifest(path.parent, {"run": run, "status": "complete", "kind": TABLE, "updated": now(),
                                 "squeezed": sorted(set(table.column("checkpoint").to_pylist()))})
    return path
