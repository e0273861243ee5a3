"""The probe families as the reader meets them: a title, the tables they write, and a short
statement of what is measured and which theory it is held against.

The dashboard pages and the report sections both take their words from here, and both show
only the families whose tables the schema declares (:func:`families`); the meaning of each
column comes from ``lab.store.schema.TABLES`` so it is written once.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.store.schema import TABLES

NOT_COMPUTED = "not computed in this run"  # what a page or section says when its table is absent


@dataclass(frozen=True)
class Family:
    """A probe family: its key, title, tables (the first one decides whether it was computed) and theory."""

    key: str
    title: str
    tables: tuple[str, ...]
    theory: str


FAMILIES: tuple[Family, ...] = (
    Family(
        "deltas", "Updates read", ("deltas",),
        "Each module's update ΔW = W_ft − W_base, or s·B·A for an adapter with PEFT's exact scale s "
        "(lora_alpha/r, lora_alpha/√r with rsLoRA, per-module rank_pattern/alpha_pattern). The Frobenius norm of "
        "an adapter is computed from the r×r Gram matrices, ‖sBA‖_F² = s²·tr((BᵀB)(AAᵀ)), without forming ΔW.",
    ),
    Family(
        "entanglement", "Internal entanglement", ("entanglement", "entanglement_summary"),
        "ΔW (m×n) is read as a quantum state ψ = vec(ΔW)/‖ΔW‖_F on a chain of sites: the prime factors of m, then "
        "those of n. At each cut k the squared singular values p_i of ψ reshaped to (D_left, D_right) give the "
        "von Neumann entropy S_k = −Σ p_i ln p_i in nats. Two baselines: the maximum ln min(D_left, D_right), and "
        "Page's mean entropy of a random state, S_Page ≈ ln d_A − d_A/(2 d_B) for d_A ≤ d_B (Page, Phys. Rev. Lett. "
        "71, 1291, 1993). At the row|column cut S is the entropy of ΔW's normalised squared singular values, so a "
        "rank-r update has S ≤ ln r there: the entanglement valley, while the outer cuts follow a volume law near "
        "Page's curve. Controls show where 'no structure' sits for each shape: a Gaussian matrix (source = random) and, for a rank-r adapter, a product of Gaussian factors of rank r (source = random_lora, an untrained LoRA).",
    ),
    Family(
        "spectra", "Rank spectra", ("spectra", "singular_values"),
        "All singular values σ_i of ΔW. Stable rank ‖ΔW‖_F²/‖ΔW‖_2²; effective rank exp(H(σ/Σσ)) (Roy & Vetterli, "
        "EUSIPCO 2007) and its σ² variant exp(H(σ²/Σσ²)), which equals exp of the row|column entanglement entropy; "
        "the ranks holding 90 % and 99 % of ‖ΔW‖_F² (how far the update could be compressed after training); rank "
        "utilisation = effective rank / r for adapters; with a base, the overlap of ΔW's top singular subspaces with "
        "W's and the count of 'intruder' directions.",
    ),
)

BY_KEY = {f.key: f for f in FAMILIES}


def families() -> list[Family]:
    """The families whose tables the schema declares, in reading order: what the report has
    sections for and the dashboard has pages for (a family whose probe has not landed yet has
    neither)."""
    return [f for f in FAMILIES if f.tables[0] in TABLES]


def columns(table: str) -> list[tuple[str, str]]:
    """(column, meaning) pairs of a declared table, from the schema; empty for a table not yet declared."""
    declared = TABLES.get(table)
    return [(c.name, c.description) for c in declared.columns] if declared else []


def table_description(table: str) -> str:
    """A table's one-line description from the schema ('' when not declared)."""
    declared = TABLES.get(table)
    return declared.description if declared else ""
