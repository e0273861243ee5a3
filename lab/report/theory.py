"""The probe families as the reader meets them: a title, the tables they write, and a short
statement of what is measured and which theory it is held against.

The dashboard pages and the report sections both take their words from here; the meaning of
each column comes from ``lab.store.schema.TABLES`` so it is written once.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.store.schema import TABLES


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
    Family(
        "attention", "Attention (external entanglement)", ("attention_entanglement",),
        "The attention probability matrix P (L×L) of each layer and head, from running the base and the tuned model "
        "on a corpus, is tensorized like a weight and its entropy profile is fitted with a volume law "
        "S = a + b·min(k, N−k) and an area law with logarithmic correction S = a + b·ln min(k, N−k). The claim to test: "
        "LoRA and full fine-tuning differ inside ΔW, not in the attention.",
    ),
    Family(
        "thresholds", "LoRA complexity thresholds", ("thresholds",),
        "Hu et al., 'Computational Limits of Low-Rank Adaptation' (2024): LoRA's gradient admits almost-linear-time "
        "algorithms when ‖X·W_Q^eff‖_∞ and ‖X·W_K‖_∞ are o(√ln L), with W_Q^eff = W_Q + s·B_Q·A_Q, and no "
        "sub-quadratic algorithm exists above Θ(√ln L) under SETH. The norms are measured on real inputs and shown "
        "as a ratio to √ln L. The bound is asymptotic in the sequence length L: it gives a scale, not a verdict on a "
        "finite model.",
    ),
    Family(
        "msu", "Minimal semantic units and merges", ("msu", "merges"),
        "Rank i of a LoRA (column b_i of B, row a_i of A) is one minimal semantic unit (LoRA-LEGO): ΔW = Σ_i s·b_i·a_iᵀ. "
        "Checks: permuting ranks leaves ΔW unchanged; concatenation equals summation; index-wise averaging of factors "
        "(FedAvg-style merging) adds cross terms; pooling, clustering and rescaling MSUs gives a merged adapter whose "
        "error against the exact sum is reported.",
    ),
)

BY_KEY = {f.key: f for f in FAMILIES}


def columns(table: str) -> list[tuple[str, str]]:
    """(column, meaning) pairs of a declared table, from the schema; empty for a table not yet declared."""
    declared = TABLES.get(table)
    return [(c.name, c.description) for c in declared.columns] if declared else []


def table_description(table: str) -> str:
    """A table's one-line description from the schema ('' when not declared)."""
    declared = TABLES.get(table)
    return declared.description if declared else ""
