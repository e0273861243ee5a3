"""Every table's columns and what they mean, defined once.

The store writes tables with these columns in this order (and refuses rows with columns that
are not declared), the dashboards and the report read the descriptions from here, and the
README's column reference is generated from here. A new column therefore shows up
everywhere, and a renamed one breaks loudly in tests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # "string", "int64", "float64", "bool"
    description: str


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(name: str, dtype: str, description: str) -> Column:
    return Column(name, dtype, description)


# Columns that identify where a row comes from; every table starts with them.
ID_COLUMNS: tuple[Column, ...] = (
    _c("run", "string", "run name (the folder under the results directory)"),
    _c("checkpoint", "string", "checkpoint name: the folder or file name, or checkpoint-N of a training output"),
    _c("step", "int64", "training step N of checkpoint-N (empty when the input is not part of a time series)"),
    _c("module", "string", "module path without '.weight' and PEFT's 'base_model.model.' prefix; GPT-2's c_attn split as '.q', '.k', '.v'"),
    _c("layer", "int64", "transformer block index (empty for embeddings and heads)"),
    _c("role", "string", "normalised role: q, k, v, o, gate, up, down, embed, lm_head, other"),
)

TABLES: dict[str, Table] = {}


def declare(name: str, description: str, *columns: Column, id_columns: bool = True) -> Table:
    """Declare a table (ID columns first unless ``id_columns=False``)."""
    table = Table(name, description, (ID_COLUMNS if id_columns else ()) + tuple(columns))
    TABLES[name] = table
    return table


declare(
    "deltas",
    "one row per module update: what was read, its shape, scale and size",
    _c("kind", "string", "lora (factored s·B·A), full (W_ft − W_base) or dora (effective DoRA update; low-rank part only without --base)"),
    _c("rows", "int64", "rows of ΔW (output features; embeddings: vocabulary)"),
    _c("cols", "int64", "columns of ΔW (input features)"),
    _c("rank_bound", "int64", "largest possible rank: r for adapters, min(rows, cols) for dense updates"),
    _c("scale", "float64", "the adapter's scale s in ΔW = s·B·A: lora_alpha/r, or lora_alpha/√r with rsLoRA (empty for dense updates)"),
    _c("fro_norm", "float64", "‖ΔW‖_F of the scaled update (for adapters from the r×r Gram matrices, never multiplied out)"),
    _c("factored", "bool", "whether the update is held as factors (B, A, scale)"),
    _c("note", "string", "anything the reader must know about this row (e.g. DoRA analysed without its base)"),
)
