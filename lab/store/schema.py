"""Every table's columns and what they mean, defined once.

The store writes tables with these columns in this order (and refuses rows with columns that
are not declared), the dashboards and the report read the descriptions from here, and the
README's column reference is generated from here. A new column therefore shows up
everywhere, and a renamed one breaks loudly in tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping


def _empty(value: Any) -> bool:
    """None, NaN or pandas' NA (whose comparisons are NA, not a bool)."""
    try:
        return value is None or bool(value != value)
    except TypeError:
        return True


@dataclass(frozen=True)
class NanWhen:
    """The rows in which a column may be empty (NaN or null), as data: the column's description says it in
    words, this says it so that a check can test every row (tests/fuzz does). Any one condition allows it.

    * ``where``: (column, values) pairs: the row's column holds one of ``values`` (``None``: is itself empty)
    * ``unless``: (column, values) pairs: the row's column holds none of ``values``
    * ``unless_match``: (column, regex) pairs: the row's column, as text, does not fully match
    * ``below``: (column, bound) pairs: the row's column is below ``bound``
    * ``without_base``: the run was given no base model (its manifest's ``inputs.base`` is empty)
    * ``zero_matrix``: the analysed matrix is zero (its module's ``fro_norm`` in the deltas table is 0)
    """

    where: tuple[tuple[str, tuple], ...] = ()
    unless: tuple[tuple[str, tuple], ...] = ()
    unless_match: tuple[tuple[str, str], ...] = ()
    below: tuple[tuple[str, float], ...] = ()
    without_base: bool = False
    zero_matrix: bool = False

    def allows(self, row: Mapping[str, Any], *, has_base: bool, zero_matrix: bool = False) -> bool:
        """Whether ``row`` (a table row as a mapping) may hold an empty value in this column."""
        if (self.without_base and not has_base) or (self.zero_matrix and zero_matrix):
            return True
        for column, values in self.where:
            v = row[column]
            if (_empty(v) and None in values) or (not _empty(v) and v in [x for x in values if x is not None]):
                return True
        for column, values in self.unless:
            if _empty(row[column]) or row[column] not in values:
                return True
        for column, pattern in self.unless_match:
            if _empty(row[column]) or re.fullmatch(pattern, str(row[column])) is None:
                return True
        return any(not _empty(row[column]) and row[column] < bound for column, bound in self.below)


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # "string", "int64", "float64", "bool"
    description: str
    nan_when: NanWhen | None = None  # the rows where it may be empty; None: never (in the tables tests/fuzz checks)


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    order: int = 0  # declaration order: documents list tables in it, whatever the dict's order

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(name: str, dtype: str, description: str, nan_when: NanWhen | None = None) -> Column:
    return Column(name, dtype, description, nan_when)


# Columns that identify where a row comes from; every table starts with them.
ID_COLUMNS: tuple[Column, ...] = (
    _c("run", "string", "run name (the folder under the results directory)"),
    _c("checkpoint", "string", "checkpoint name: the folder or file name, or checkpoint-N of a training output"),
    _c("step", "int64", "training step N of checkpoint-N (empty when the input is not part of a time series)",
       NanWhen(unless_match=(("checkpoint", r"checkpoint-\d+"),))),
    _c("module", "string", "module path without '.weight' and PEFT's 'base_model.model.' prefix; GPT-2's c_attn split as '.q', '.k', '.v'; "
       "image-model LoRA files: kohya's flattened name as the file gives it (lora_unet_down_blocks_0_attentions_0_proj_in), "
       "or with a diffusers model folder as --base its dotted path with the component first (unet.down_blocks.0.attentions.0.proj_in). "
       "A convolution's update (out, in, kh, kw) is analysed as the matrix out × (in·kh·kw), its factors never multiplied out"),
    _c("layer", "int64", "transformer block index (empty for embeddings and heads, and for a UNet's modules: down/mid/up blocks "
       "have no single depth index, nor FLUX's single blocks; text encoders' layers.N and DiT/FLUX (double) blocks.N have one)",
       NanWhen(where=(("role", ("embed", "lm_head", "other", "conv", "time_embed", "proj_in", "proj_out", "qkv")),),
               unless_match=(("module", r"(?!.*(?:^|[._])(?:down_blocks|up_blocks|mid_block|single_transformer_blocks|single_blocks)[._]).*"),))),
    _c("role", "string", "normalised role: q, k, v, o, gate, up, down, embed, lm_head, other; image models also qkv (FLUX's "
       "fused projection), conv (resnet, sampler, in/out convolutions), time_embed (time and added-condition embeddings), "
       "proj_in, proj_out (a transformer block's input/output projections); to_out.0 is o, ff.net.0.proj up, ff.net.2 down"),
)

TABLES: dict[str, Table] = {}


def declare(name: str, description: str, *columns: Column, id_columns: bool = True) -> Table:
    """Declare a table (ID columns first unless ``id_columns=False``)."""
    order = TABLES[name].order if name in TABLES else len(TABLES)
    table = Table(name, description, (ID_COLUMNS if id_columns else ()) + tuple(columns), order)
    TABLES[name] = table
    return table


declare(
    "deltas",
    "one row per module update: what was read, its shape, scale and size",
    _c("kind", "string", "lora (factored s·B·A), full (W_ft − W_base), dora (effective DoRA update; low-rank part only without --base) or mps (MPS Adaptation: s·B·A_MPS with A_MPS contracted from its two cores, factored); any other weight-modifying PEFT type is its peft_type lower-cased (lab.deltas.PEFT_KINDS): adalora (factored B·(A⊙λ) of the kept ranks), vera (factored (λ_b⊙B)·(λ_d⊙A)), loha (factored: Khatri–Rao factors of rank r1·r2), ia3 (dense W·diag(l − 1) or diag(l − 1)·W from the base), lokr (s·kron(W1, W2) of its two factors, each dense or w_a·w_b, never multiplied out) read by structured readers (lab/checkpoints/peft_types/); oft, boft, hra, fourierft, miss, shira, randlora, ...: dense ΔW computed by PEFT itself. Image-model LoRA files (lab/checkpoints/kohya.py): kohya LoRA/LoCon and diffusers files lora, LyCORIS loha, lokr, full (its diff) and dora (dora_scale), a convolution's update as the matrix out × (in·kh·kw)"),
    _c("rows", "int64", "rows of ΔW (output features; embeddings: vocabulary)"),
    _c("cols", "int64", "columns of ΔW (input features)"),
    _c("rank_bound", "int64", "largest possible rank (the ceiling ln rank_bound of the row|column entropy): r for LoRA/DoRA/MPS adapters, the kept ranks for adalora, r for vera, r1·r2 for loha (min(rows, cols) when that is not smaller), rank(W1)·rank(W2) for lokr (each factor's r, or the smaller side of a dense factor; a fused projection's part cut across W2's rows: min(rows, cols)), min(rows, cols) for ia3 (a diagonal scaling of W: full rank), full and dense updates (every general-path PEFT type)"),
    _c("pruned_ranks", "int64", "adalora: ranks of the module its budget allocation pruned (init_r − kept: λ = 0 or dropped by rank_pattern when saved); empty for every other kind", NanWhen(unless=(("kind", ("adalora",)),))),
    _c("params", "int64", "trainable parameters behind the update: LoRA r·(rows + cols), DoRA that plus rows (magnitudes), MPS rows·r + r·d1·χ + χ·d2 (B, C1, C2), full rows × cols (a fused projection's part counts its rows of B and the shared A); other PEFT types the module's own stored adapter tensors (adalora: A, B, E as stored, pruned ranks not saved; vera: λ_b and λ_d, out + r; loha: 2·r·(rows + cols); ia3: l, rows or cols; lokr: w1 or w1_a, w1_b and w2 or w2_a, w2_b), whole for each part of a fused projection, tensors shared by all modules (VeRA's projections) not counted; kohya/LyCORIS files: every stored tensor of the module but alpha"),
    _c("scale", "float64", "the adapter's scale s in ΔW = s·B·A: lora_alpha/r, or lora_alpha/√r with rsLoRA; adalora lora_alpha/(init_r + 1e-5) (PEFT's ranknum), loha alpha/r, lokr alpha/r (ΔW = s·kron(W1, W2)), vera 1; kohya/LyCORIS files alpha/r (absent or zero alpha: 1), diffusers files lora_alpha/r from their lora_adapter_metadata, else 1 (empty for dense updates)", NanWhen(where=(("factored", (False,)),))),
    _c("fro_norm", "float64", "‖ΔW‖_F of the scaled update (for adapters from the r×r Gram matrices, for lokr |s|·‖W1‖_F·‖W2‖_F; never multiplied out)"),
    _c("factored", "bool", "whether the update is held in a structured form, never multiplied out: factors (B, A, scale), or for lokr the Kronecker product s·kron(W1, W2) of two factors (each dense or w_a·w_b)"),
    _c("note", "string", "anything the reader must know about this row (e.g. DoRA analysed without its base)"),
)


# rows where a column may be empty, shared by several columns
_NO_VALLEY = NanWhen(where=(("valley_cut", (None,)), ("valley_entropy", (None,))))  # no valley cut, or a NaN profile
_WITHOUT_BASE = NanWhen(without_base=True)  # comparisons with W need the base

# ---- entanglement and spectra probes (lab/probes/entanglement.py, lab/probes/spectra.py) ----------

_SOURCE = _c("source", "string", "what was analysed: delta (ΔW), weight (the base W, --targets weight), random (seeded Gaussian matrix of the same shape, a control) or random_lora (seeded product of Gaussian factors B·A of the same shapes and rank, a control)")

declare(
    "entanglement",
    "MPS entropy profile of ψ = vec(M)/‖M‖_F (row-major) over the chain of prime-factor sites: one row per cut",
    _SOURCE,
    _c("n_sites", "int64", "number of sites N: prime factors of rows (ascending), then of cols (ascending)"),
    _c("row_sites", "int64", "how many of the sites belong to the rows; the cut after them separates outputs from inputs"),
    _c("cut", "int64", "cut position k (1 … N−1): k sites on the left"),
    _c("d_left", "int64", "dimension of the left block D_left = d_1·…·d_k"),
    _c("d_right", "int64", "dimension of the right block D_right = d_{k+1}·…·d_N"),
    _c("entropy", "float64", "von Neumann entropy −Σ p ln p of the squared Schmidt values at this cut, nats (NaN for a zero or non-finite matrix)", NanWhen(zero_matrix=True)),
    _c("renyi2", "float64", "Rényi-2 entropy −ln Σ p², nats"),
    _c("max_entropy", "float64", "largest possible entropy ln min(D_left, D_right)"),
    _c("page_entropy", "float64", "Page's mean entropy of a random state of dimensions (D_left, D_right): ψ(d_A d_B + 1) − ψ(d_B + 1) − (d_A − 1)/(2 d_B), d_A ≤ d_B"),
)

declare(
    "entanglement_summary",
    "one row per analysed matrix: the entanglement valley at the row-column cut and a volume-law fit of the other cuts",
    _SOURCE,
    _c("rows", "int64", "rows of the matrix"),
    _c("cols", "int64", "columns of the matrix"),
    _c("rank_bound", "int64", "largest possible rank: r for adapters (and random_lora), rank(W1)·rank(W2) for lokr, min(rows, cols) otherwise"),
    _c("sites", "string", "the site chain as text: the prime factors of rows, a vertical bar, then those of cols (12×18 gives 2·2·3, bar, 2·3·3)"),
    _c("n_sites", "int64", "number of sites N"),
    _c("row_sites", "int64", "number of row sites"),
    _c("valley_cut", "int64", "the row-column cut (= row_sites); empty for 1×n and m×1 matrices", NanWhen(where=(("rows", (1,)), ("cols", (1,))))),
    _c("valley_entropy", "float64", "entropy at the valley cut (= ln of the entropy rank of the singular values), nats"),
    _c("valley_max_entropy", "float64", "ln min(rows, cols): the largest entropy the valley cut allows"),
    _c("valley_page_entropy", "float64", "Page's mean entropy at the valley cut (a random matrix of this shape)"),
    _c("valley_depth", "float64", "Page's value minus the entropy at the valley cut, nats: how far below chance the row-column cut sits"),
    _c("page_ratio_mean", "float64", "mean over all cuts, the valley cut included, of entropy / Page's value (1 ≈ random); page_ratio_outer leaves the valley cut out"),
    _c("volume_slope", "float64", "slope b of the least-squares fit entropy = a + b·ln min(D_left, D_right) over the cuts away from the valley: every cut but the valley where the rank bound r cannot cap the Schmidt rank (r·rows/D_left ≥ min(D_left, D_right) inside the row sites, r·cols/D_right ≥ min(D_left, D_right) inside the column sites); NaN with fewer than two such cuts", NanWhen(below=(("volume_cuts", 2),))),
    _c("volume_intercept", "float64", "intercept a of that fit, nats", NanWhen(below=(("volume_cuts", 2),))),
    _c("volume_cuts", "int64", "number of cuts in the volume-law fit"),
    _c("page_slope", "float64", "the same fit to Page's values on the same cuts: the slope a random matrix would give", NanWhen(below=(("volume_cuts", 2),))),
    _c("valley_neighbour_depth", "float64", "mean entropy at the cuts next to the valley cut (valley_cut ± 1, those that exist) minus the entropy at the valley cut, nats: the dip against its own neighbours; empty without a valley cut or for a NaN profile", _NO_VALLEY),
    _c("valley_width", "int64", "number of cuts in the longest run of consecutive cuts containing the valley cut whose depth below Page (Page − entropy) is at least half valley_depth (1 = a one-cut notch); 0 when valley_depth ≤ 0; empty without a valley cut or for a NaN profile", _NO_VALLEY),
    _c("deepest_cut", "int64", "the cut with the largest Page − entropy (the first on ties): equals valley_cut when the profile's deepest point below Page is the row-column cut; empty without a valley cut or for a NaN profile", _NO_VALLEY),
    _c("page_ratio_outer", "float64", "mean over every cut except the valley cut of entropy / Page's value (cuts where Page's value is 0 skipped): how close the rest of the chain stays to a random state (1 ≈ random); NaN for a NaN profile or with no other cut", NanWhen(where=(("valley_entropy", (None,)), ("n_sites", (2,))))),
)

declare(
    "spectra",
    "one row per analysed matrix: norms and ranks from its singular values; with a base, alignment of ΔW with W and intruder directions",
    _SOURCE,
    _c("rows", "int64", "rows of the matrix"),
    _c("cols", "int64", "columns of the matrix"),
    _c("rank_bound", "int64", "largest possible rank: r for adapters (and random_lora), rank(W1)·rank(W2) for lokr, min(rows, cols) otherwise"),
    _c("fro_norm", "float64", "Frobenius norm √Σσ²"),
    _c("spectral_norm", "float64", "largest singular value σ₁"),
    _c("stable_rank", "float64", "‖M‖²_F / ‖M‖²₂ (Rudelson & Vershynin 2007)"),
    _c("effective_rank", "float64", "exp of the Shannon entropy of σ/Σσ (Roy & Vetterli 2007)"),
    _c("entropy_rank", "float64", "exp of the Shannon entropy of σ²/Σσ² (= exp of the entanglement entropy at the row-column cut)"),
    _c("energy_rank_90", "int64", "fewest leading singular values holding 90 % of Σσ²"),
    _c("energy_rank_99", "int64", "fewest leading singular values holding 99 % of Σσ²"),
    _c("numerical_rank", "int64", "number of σ > σ₁·max(rows, cols)·ε_float64 (numpy.linalg.matrix_rank's tolerance; adapters: from the r×r core)"),
    _c("utilization", "float64", "effective_rank / rank_bound"),
    _c("overlap_k", "int64", "dimension k of the singular subspaces compared: min(top_k option (16), numerical rank of ΔW); empty without a base", _WITHOUT_BASE),
    _c("overlap_left", "float64", "mean cos² of the principal angles between the top-k left (output) singular subspaces of ΔW and W: 1 same, 0 orthogonal", _WITHOUT_BASE),
    _c("overlap_right", "float64", "the same for the right (input) singular subspaces", _WITHOUT_BASE),
    _c("overlap_left_random", "float64", "k/rows: the expected overlap_left of random subspaces, the baseline to read it against", _WITHOUT_BASE),
    _c("overlap_right_random", "float64", "k/cols: the expected overlap_right of random subspaces", _WITHOUT_BASE),
    _c("intruder_top", "int64", "how many leading left singular vectors of W + ΔW were examined for intruders (10, as in Shuttleworth et al. 2024)", _WITHOUT_BASE),
    _c("intruder_threshold", "float64", "ε: a vector is an intruder when its largest absolute cosine with W's left singular vectors (all of them unless the intruder_reference option limits them) is below ε", _WITHOUT_BASE),
    _c("intruder_count", "int64", "number of intruder directions among the examined vectors (Shuttleworth et al. 2024, 'LoRA vs Full Fine-tuning: An Illusion of Equivalence')", _WITHOUT_BASE),
    _c("intruder_min_cos", "float64", "smallest of the examined vectors' largest absolute cosine with W's singular vectors; empty when W + ΔW has no nonzero singular value (it cancels to 0 in float64: nothing to examine, intruder_count 0)", NanWhen(without_base=True, where=(("intruder_count", (0,)),))),
)

declare(
    "singular_values",
    "one row per singular value of each analysed matrix (adapters: the r values of the core, lokr the rank(W1)·rank(W2) products σ(W1)_i·σ(W2)_j; the rest are zero)",
    _SOURCE,
    _c("index", "int64", "position of σ in descending order, from 1"),
    _c("sigma", "float64", "the singular value σ_k"),
    _c("energy_fraction", "float64", "σ_k² / Σσ²"),
    _c("cumulative_energy", "float64", "Σ_{i≤k} σ_i² / Σσ²"),
)


# ---- minimal semantic units and merges (lab/probes/msu.py, lab/probes/msu_pairs.py, lab/merge) ---

declare(
    "msu",
    "one row per adapter module: its LoRA-LEGO minimal semantic units U_i = s·b_i·a_iᵀ (b_i column i of B, a_i row i of A), from the factors",
    _c("rows", "int64", "rows of ΔW"),
    _c("cols", "int64", "columns of ΔW"),
    _c("rank", "int64", "number of units r"),
    _c("scale", "float64", "the adapter's scale s (PEFT's, rsLoRA and rank/alpha patterns included)"),
    _c("fro_norm", "float64", "‖ΔW‖_F = √Σ_ij G_ij, G = s²·(BᵀB)∘(AAᵀ) the units' Gram (G_ij = ⟨U_i, U_j⟩_F)"),
    _c("contribution_sum", "float64", "Σ_i c_i, c_i = |s|·‖b_i‖·‖a_i‖ = ‖U_i‖_F"),
    _c("contribution_max", "float64", "max_i c_i"),
    _c("cross_energy", "float64", "(‖ΔW‖²_F − Σ c_i²) / ‖ΔW‖²_F: the part of the energy in cross terms between units (0 when the units are orthogonal)"),
    _c("effective_units", "float64", "exp of the Shannon entropy of the own shares c_i²/Σc² (1 … r)"),
    _c("effective_units_ratio", "float64", "effective_units / rank"),
    _c("cos_a_max", "float64", "largest |cos| between two rows a_i, a_j of A"),
    _c("cos_a_mean", "float64", "mean |cos| over all pairs of rows of A"),
    _c("cos_b_max", "float64", "largest |cos| between two columns b_i, b_j of B"),
    _c("cos_b_mean", "float64", "mean |cos| over all pairs of columns of B"),
    _c("permutations", "int64", "how many seeded random permutations P of the ranks were tried"),
    _c("permutation_error_max", "float64", "max over P of ‖s·B·A − s·(BP)(PᵀA)‖_F / ‖ΔW‖_F (QR of the stacked factors; rounding only, ~1e-16)"),
    _c("permutation_error_mean", "float64", "mean of the same over P"),
    _c("note", "string", "e.g. a DoRA adapter read with --base is dense: no units"),
)

declare(
    "msu_units",
    "one row per unit of each adapter module (msu probe)",
    _c("unit", "int64", "rank index i of the unit (0-based, as stored)"),
    _c("order", "int64", "position of the unit by contribution, descending, from 1"),
    _c("contribution", "float64", "c_i = |s|·‖b_i‖·‖a_i‖ = ‖U_i‖_F"),
    _c("b_norm", "float64", "‖b_i‖ (column i of B)"),
    _c("a_norm", "float64", "‖a_i‖ (row i of A)"),
    _c("own_share", "float64", "c_i² / Σ_j c_j²: the unit's energy on its own (sums to 1)"),
    _c("energy_share", "float64", "Gram-weighted share ⟨U_i, ΔW⟩_F / ‖ΔW‖²_F = Σ_j G_ij / Σ_jk G_jk (sums to 1; negative when the unit opposes the rest)"),
)

declare(
    "msu_similarity",
    "one row per pair of units i < j of each adapter module (msu probe): how alike two units are, for the MSU page's heatmap",
    _c("unit_i", "int64", "rank index i of the first unit (0-based, as stored)"),
    _c("unit_j", "int64", "rank index j > i of the second unit"),
    _c("cos_a", "float64", "cos(a_i, a_j) between rows i and j of A (signed; empty when either row is zero)"),
    _c("cos_b", "float64", "cos(b_i, b_j) between columns i and j of B (signed; empty when either column is zero)"),
)

declare(
    "msu_pairs",
    "one row per module shared by several adapters of the run (msu_pairs, group scope): concatenation vs summation and the cross terms of index-wise averaging",
    _c("members", "string", "the adapters (checkpoints) that have this module, comma-separated, in run order; the checkpoint column joins them with '+'"),
    _c("n_members", "int64", "number of adapters J compared"),
    _c("ranks", "string", "each member's rank r_j, comma-separated ('dense' for a dense member, 'kron' for a LoKr Kronecker product)"),
    _c("scales", "string", "each member's scale s_j, comma-separated"),
    _c("mean_fro_norm", "float64", "‖T‖_F of the exact mean update T = (1/J)·Σ_j s_j B_j A_j"),
    _c("concat_sum_error", "float64", "‖[B_1 … B_J]·[s_1 A_1; …; s_J A_J] − Σ_j s_j B_j A_j‖_F / ‖Σ_j s_j B_j A_j‖_F: zero in exact arithmetic (concatenation = summation, any ranks and scales), rounding only"),
    _c("cross_term_error", "float64", "‖B̃·Ã − T‖_F / ‖T‖_F for PEFT's 'linear' index-wise average B̃ = Σ_j √(s_j/J)·B_j, Ã = Σ_j √(s_j/J)·A_j (signs on Ã): the cross terms (1/J)·Σ_{j≠k} √(s_j s_k)·B_j A_k, FLoRA's aggregation noise; empty when the ranks differ"),
    _c("permutations", "int64", "how many seeded random permutations of every adapter's ranks were tried"),
    _c("cross_term_error_mean", "float64", "mean of cross_term_error over the permutations (each adapter's ranks permuted independently: every update is unchanged, the index-wise average is not)"),
    _c("cross_term_error_min", "float64", "smallest cross_term_error over the permutations"),
    _c("cross_term_error_max", "float64", "largest cross_term_error over the permutations"),
    _c("fedavg_error", "float64", "‖B̄·Ā − T‖_F / ‖T‖_F for FedAvg's index-wise mean B̄ = (1/J)·Σ_j B_j, Ā = (1/J)·Σ_j s_j·A_j (zero for identical adapters, unlike PEFT's linear rule, which gives J times the update: error J − 1); empty when the ranks differ"),
    _c("fedavg_error_mean", "float64", "mean of fedavg_error over the same rank permutations"),
    _c("fedavg_error_min", "float64", "smallest fedavg_error over the permutations"),
    _c("fedavg_error_max", "float64", "largest fedavg_error over the permutations"),
    _c("note", "string", "why a measure is empty: heterogeneous ranks, dense members"),
)

declare(
    "merge",
    "one row per module of a merged adapter written by lab merge (checkpoint = the merged adapter's folder name): its error against the exact weighted sum T = Σ_j w_j·s_j·B_j·A_j, beside the best rank-k error",
    _c("method", "string", "stack (FLoRA concatenation: exact), linear (PEFT's index-wise average: cross terms), svd (best rank k of T from the stacked factors), lego (LoRA-LEGO: k-means over the pooled units, centroids rescaled to their members' mean norm, output × √(r/k); data-free), lego-oracle (the lab's earlier variant: centroids × cluster size, output scale fitted to T itself, an oracle), or a task-vector method on each module's dense update, PEFT's definitions (lab/kernels/task_vectors.py), cut to rank k by the exact SVD: task_arithmetic (T itself), ties (trim to --density by magnitude, elect the sign of the sum, disjoint mean), dare_linear (drop with probability 1 − density, rescale by 1/density), dare_ties (DARE's drop, then TIES' election and mean), magnitude_prune (trim, then the weighted sum); full fine-tunes merged as task vectors W_j − W_0 get these methods without the rank cut"),
    _c("k", "int64", "rank of the merged module; empty for a full fine-tune's tensor (merged dense, no rank cut)"),
    _c("pooled_units", "int64", "Σ_j r_j over the adapters that have this module; empty for a full fine-tune's tensor"),
    _c("members", "string", "the input adapters that have this module (a module an adapter lacks contributes zero)"),
    _c("weights", "string", "their weights w_j, comma-separated"),
    _c("target_fro_norm", "float64", "‖T‖_F"),
    _c("rel_fro_error", "float64", "‖M − T‖_F / ‖T‖_F of the merged update M in float64 (QR of the stacked factors, never a dense ΔW; a full fine-tune's tensor: from the dense differences W_j − W_0)"),
    _c("optimal_rel_fro_error", "float64", "√(Σ_{i>k} σ_i²) / ‖T‖_F: the error of the best rank-k approximation of T (Eckart–Young), the floor for any merge of rank k; empty for a full fine-tune's tensor"),
    _c("rel_spectral_error", "float64", "‖M − T‖_2 / ‖T‖_2; empty for a full fine-tune's tensor"),
    _c("optimal_rel_spectral_error", "float64", "σ_{k+1} / σ_1: the best rank-k spectral error; empty for a full fine-tune's tensor"),
    _c("stored_rel_fro_error", "float64", "‖M̂ − T‖_F / ‖T‖_F for the factors as written (rounded to the inputs' dtype, e.g. float32)"),
    _c("hidden_rel_error", "float64", "‖H_M − H_T‖_F / ‖H_T − H_0‖_F: last-layer hidden states of the merged model (M), the model with the exact sum T applied and the base (0), on the first N windows of L tokens of --texts as the attention probes define them (--base with --texts; the same value on every row of a merged adapter; empty otherwise)"),
    _c("method_rel_fro_error", "float64", "‖M_full − T‖_F / ‖T‖_F: the method's own full-rank result M_full (before any rank cut) against the exact sum, i.e. what trimming, dropping and sign election cost (0 for stack, svd and task_arithmetic; empty for linear, lego and lego-oracle, which have no full-rank stage)"),
    _c("truncation_rel_fro_error", "float64", "‖M_full − M‖_F / ‖T‖_F: what the rank-k cut alone costs (the SVD tail of M_full; 0 for stack; empty for linear, lego, lego-oracle and a full fine-tune's tensors, which are not cut)"),
    _c("density", "float64", "--density d, the fraction of each update's entries kept by ties, dare_linear, dare_ties and magnitude_prune; empty for the other methods"),
    _c("seed", "int64", "the seed of DARE's drop masks (dare_linear, dare_ties) or of LEGO's k-means (lego, lego-oracle); empty for the other methods"),
)

declare(
    "merge_eval",
    "one row per (model, text set) of a merged adapter written by lab merge --eval-texts: the held-out loss of the merged adapter, of every input adapter and of the base on each text set (module, layer and role are empty: the rows are whole models)",
    _c("merged", "string", "the merged adapter's folder name: the rows of one merge (its inputs and the base are repeated for each merge)"),
    _c("method", "string", "the merge method of that adapter (stack, linear, svd, lego, lego-oracle, task_arithmetic, ties, dare_linear, dare_ties, magnitude_prune)"),
    _c("kind", "string", "merged (checkpoint = the merged adapter), input (checkpoint = an input adapter's folder name) or base (checkpoint = 'base')"),
    _c("texts", "string", "the text set: the --eval-texts file's name without its suffix"),
    _c("seq_len", "int64", "window length L in tokens"),
    _c("windows", "int64", "number of windows N: the first N windows of L tokens of the text set, as the activation probes define them (texts tokenized without special tokens, joined by the separator token)"),
    _c("objective", "string", "the loss, that of the base's fine-tuning objective (lab/finetune/objectives.py): causal-lm = mean next-token cross-entropy over the N·(L−1) predicted tokens (nats); contrastive (an encoder without LM head, e.g. MiniLM) = InfoNCE at τ = 0.05 over the N windows as one batch, each window's first ⌊L/2⌋ tokens the anchor and the rest its positive, [CLS]/[SEP] added, mean-pooled (nats)"),
    _c("loss", "float64", "the model's loss on the text set's windows, in float64 from float32 models"),
    _c("base_loss", "float64", "the base model's loss on the same windows"),
    _c("loss_change", "float64", "loss − base_loss: negative when the model does better than the base on this text set"),
)


# ---- activation probes (lab/probes/attention.py, lab/probes/thresholds.py) -------------------------

_HEAD = _c("head", "int64", "attention (query) head index within the layer, from 0")
_SEQ_LEN = _c("seq_len", "int64", "window length L in tokens")
_WINDOW = _c("window", "int64", "window index w: tokens w·L … (w+1)·L − 1 of the joined token stream (see the windows table)")
_ELL = "ℓ = ln min(D_left, D_right), the sites on the smaller side of the cut each counted as ln of its dimension (nats)"
# The thresholds' caveat, said once: here, in the tables' descriptions, and (imported from here, the layer every
# reader can import) in the family's theory, findings sentences, figures and table captions.
ASYMPTOTIC_CAVEAT = ("The bound is asymptotic and its constants unknown (o(√ln L) admits almost-linear algorithms, "
                     "Θ(√ln L) none sub-quadratic under SETH): these are measurements at finite L against the scale "
                     "√ln L, not a verdict on efficiency.")

declare(
    "squeeze",
    "one row per module of an adapter written by lab squeeze (checkpoint = the output folder's name): LoRA-Squeeze's Post-Squeeze, the truncated SVD of the module's update, its error and the energy it keeps (Cont-Squeeze's further steps, --steps, and In-Squeeze, lab finetune --squeeze-to, are training runs, not rows here)",
    _c("source", "string", "the squeezed checkpoint (a PEFT LoRA or MPS adapter folder, or a full fine-tune)"),
    _c("source_kind", "string", "lora, mps (factored: the exact SVD from QR of both factors and an r×r SVD) or full (dense ΔW = W_ft − W_base: a seeded randomized SVD)"),
    _c("method", "string", "exact (SVD from the factors, or LAPACK's for a dense ΔW with --energy) or randomized (Halko et al. 2011, seeded, with power iterations)"),
    _c("rank_in", "int64", "rank bound of the input update: r for adapters, min(rows, cols) for a full fine-tune"),
    _c("k", "int64", "rank kept (--rank, or per module the smallest rank keeping --energy of ‖ΔW‖_F²)"),
    _c("energy_target", "float64", "the --energy fraction asked for (empty with --rank)"),
    _c("kept_energy", "float64", "Σ_{i≤k} σ_i² / Σ σ_i²: the fraction of ‖ΔW‖_F² the kept rank-k update holds"),
    _c("rel_fro_error", "float64", "‖M − ΔW‖_F / ‖ΔW‖_F of the kept update M in float64 (adapters: from QR of the stacked factors, never a dense ΔW)"),
    _c("optimal_rel_fro_error", "float64", "√(Σ_{i>k} σ_i²) / ‖ΔW‖_F: the exact truncated SVD's error (Eckart–Young); beside a randomized SVD's rel_fro_error it shows what randomization cost (empty for a dense ΔW above the exact-SVD size limit)"),
    _c("rel_spectral_error", "float64", "‖M − ΔW‖_2 / ‖ΔW‖_2 (NaN for a dense ΔW above the exact-SVD size limit)"),
    _c("stored_rel_fro_error", "float64", "rel_fro_error of the factors as written (rounded to the stored dtype, float32 or float64)"),
    _c("params_in", "int64", "trainable parameters of the input module (LoRA r·(rows + cols), MPS B + C1 + C2, full rows × cols)"),
    _c("params_out", "int64", "parameters of the squeezed LoRA module: k·(rows + cols)"),
    _c("seconds", "float64", "wall-clock seconds of this module's SVD"),
)

declare(
    "windows",
    "the token windows the model-running probes used: each text tokenized without special tokens, texts joined by the "
    "separator token (eos, or sep for BERT-style tokenizers), consecutive windows of exactly L tokens from offset 0, the "
    "first N; no padding, no masks, the same windows for the base and every checkpoint",
    _c("probe", "string", "the probe whose seq_len and windows options defined these windows (attention, thresholds, forgetting; forgetting:reference for the forgetting probe's reference_texts windows)"),
    _SEQ_LEN,
    _WINDOW,
    _c("token_offset", "int64", "offset of the window's first token in the joined stream (= window·seq_len)"),
    _c("text", "string", "the first 80 characters of the window decoded by the tokenizer"),
)

_PAPER_ATTENTION = ("arXiv 2601.06788 (Chen et al., 'Artificial Entanglement in the Fine-Tuning of Large Language "
                    "Models'), abstract finding (ii) and Figure 1: attention entanglement, 'corresponding to token–token "
                    "correlations', 'follows an area law with logarithmic corrections' ('Attention Cardy Formula'); the "
                    "section defining the paper's cut was not found in the stored text, so the cut here is the one issue 21 "
                    "specifies")
_TOKEN_VERDICT = ("cardy or volume when that law's AIC is lower than both other laws' by more than 2 and its R² ≥ 0.8; "
                  "constant when neither of the two lowers the constant's AIC by more than 2 (the constant is nested in "
                  "both, so its own margin cannot exceed 2) and its residual standard error is ≤ 5 % of |a|; else "
                  "'neither fits'; empty below 5 finite cuts")

declare(
    "attention_token_cuts",
    "token cuts of each head's L×L attention probability matrix P on one window: for a cut after ℓ tokens the cross block "
    "(block reads_past: C = P[ℓ:, :ℓ], queries at positions ≥ ℓ reading keys before ℓ; block reads_future: C = P[:ℓ, ℓ:], "
    "queries before ℓ reading keys at or after ℓ, for bidirectional encoders only — a causal model's is zero), its squared "
    "singular values normalised p_i = σ_i²/Σσ² (float64 eigenvalues of the Gram of C's smaller side over ‖C‖_F², from the "
    "same hooked P as the digit chain); one row per (layer, head, window, block, cut). " + _PAPER_ATTENTION,
    _HEAD, _SEQ_LEN, _WINDOW,
    _c("block", "string", "reads_past (P[ℓ:, :ℓ]) or reads_future (P[:ℓ, ℓ:], bidirectional encoders only)"),
    _c("cut", "int64", "ℓ: tokens before the cut, 1 … L−1 (every cut, or the evenly spaced subset of the attention.token_cuts option)"),
    _c("entropy", "float64", "S(ℓ) = −Σ p_i ln p_i, nats (NaN when the block is exactly zero); at most max_entropy"),
    _c("renyi2", "float64", "Rényi-2 entropy −ln Σ p_i², nats (≤ entropy)"),
    _c("rank", "int64", "numerical rank: #{p_i > 1e-12}, i.e. σ_i > 1e-6·‖C‖_F (0 for a zero block)"),
    _c("mass", "float64", "the block's share of the attention mass ΣC / ΣP (ΣP = L: rows sum to 1)"),
    _c("max_entropy", "float64", "ln min(ℓ, L−ℓ): the largest possible entropy of the block"),
    _c("base_entropy", "float64", "the base model's S(ℓ) for the same layer, head, window, block and cut"),
)

declare(
    "attention_token_fits",
    "per (checkpoint, layer, head, L, block): three least-squares laws over the token cuts ℓ of the windows' mean S(ℓ) "
    "(attention_token_cuts): Cardy's chord S = a + (c/3)·ln((L/π)·sin(πℓ/L)), the volume law S = a + b·min(ℓ, L−ℓ) and "
    "the constant S = a (a saturating area law); AIC = n·ln(RSS/n) + 2(k+1) with k the fitted coefficients; the same "
    "laws fitted to each window for their spread, and to the base's mean profile. " + _PAPER_ATTENTION,
    _HEAD, _SEQ_LEN,
    _c("block", "string", "reads_past or reads_future, as in attention_token_cuts"),
    _c("windows", "int64", "number of windows averaged"),
    _c("cuts", "int64", "number of cuts n fitted"),
    _c("cardy_a", "float64", "intercept a of Cardy's chord fit, nats"),
    _c("cardy_c", "float64", "c = 3·slope of S against ln((L/π)·sin(πℓ/L)): the 'central charge' of the Cardy fit (reported whatever the verdict; read it with cardy_r2)"),
    _c("cardy_r2", "float64", "R² of the Cardy fit (NaN when S is constant over the cuts)"),
    _c("cardy_rse", "float64", "residual standard error √(RSS/(n−2)) of the Cardy fit, nats"),
    _c("cardy_aic", "float64", "AIC of the Cardy fit (k = 2)"),
    _c("volume_a", "float64", "intercept a of the volume-law fit S = a + b·min(ℓ, L−ℓ), nats"),
    _c("volume_b", "float64", "slope b of the volume law, nats per token"),
    _c("volume_r2", "float64", "R² of the volume-law fit"),
    _c("volume_rse", "float64", "residual standard error of the volume-law fit, nats"),
    _c("volume_aic", "float64", "AIC of the volume-law fit (k = 2)"),
    _c("constant_a", "float64", "the constant law's a: the mean of S over the cuts, nats (its R² is 0 by definition)"),
    _c("constant_rse", "float64", "residual standard error √(RSS/(n−1)) of the constant law, nats"),
    _c("constant_aic", "float64", "AIC of the constant law (k = 1)"),
    _c("best_fit", "string", "the law with the lowest AIC (cardy, volume, constant), whether or not it fits"),
    _c("aic_margin", "float64", "AIC of the runner-up − AIC of best_fit (> 2 needed for a cardy or volume verdict)"),
    _c("verdict", "string", _TOKEN_VERDICT),
    _c("rises_left", "bool", "the mean S(ℓ) is non-decreasing over the cuts ℓ ≤ L/2"),
    _c("falls_right", "bool", "the mean S(ℓ) is non-increasing over the cuts ℓ ≥ L/2"),
    _c("window_cardy_c_mean", "float64", "mean over windows of c fitted to each window's own profile"),
    _c("window_cardy_c_sd", "float64", "standard deviation over windows of the per-window c (NaN with one window)"),
    _c("window_cardy_r2_median", "float64", "median over windows of the per-window Cardy R²"),
    _c("window_verdict_share", "float64", "fraction of windows whose own verdict equals this row's verdict"),
    _c("base_cardy_c", "float64", "c of the Cardy fit to the base's mean profile"),
    _c("base_cardy_r2", "float64", "R² of the Cardy fit to the base's mean profile"),
    _c("base_volume_r2", "float64", "R² of the volume-law fit to the base's mean profile"),
    _c("base_best_fit", "string", "the base's law with the lowest AIC"),
    _c("base_aic_margin", "float64", "the base's AIC margin"),
    _c("base_verdict", "string", "the base's verdict, by the same rule"),
    _c("base_window_cardy_c_sd", "float64", "standard deviation over windows of the base's per-window c"),
)

declare(
    "attention_entanglement",
    "digit-chain profile of each head's L×L attention probability matrix P on one window: the internal probe (the "
    "entanglement table's MPS profile) applied to P, ψ = vec(P)/‖P‖_F over the prime-factor sites of L×L. Its cut k splits "
    "high from low digits of the query and key indices (a log-dimension), not blocks of tokens: the token cuts are in "
    "attention_token_cuts. One row per cut. For causal models P is lower-triangular "
    "(row i attends to i+1 tokens, the first rows are nearly one-hot): the profile is that of a triangular matrix, "
    "lower than a full one's at the cuts inside the row sites and not symmetric under k ↔ N−k",
    _HEAD, _SEQ_LEN, _WINDOW,
    _c("cut", "int64", "cut position k (1 … N−1): k sites on the left; the cut after the row sites separates query from key"),
    _c("n_sites", "int64", "number of sites N: prime factors of L, twice"),
    _c("d_left", "int64", "dimension of the left block D_left"),
    _c("d_right", "int64", "dimension of the right block D_right"),
    _c("entropy", "float64", "von Neumann entropy of the squared Schmidt values at this cut, nats (0 at every cut for a uniform P, ln L at the row-column cut for the identity)"),
    _c("renyi2", "float64", "Rényi-2 entropy −ln Σ p², nats"),
    _c("max_entropy", "float64", "ln min(D_left, D_right): the largest possible entropy at this cut"),
    _c("page_entropy", "float64", "Page's mean entropy of a random state of dimensions (D_left, D_right)"),
    _c("base_entropy", "float64", "the base model's entropy at this cut, same layer, head and window"),
)

declare(
    "attention_summary",
    "per (checkpoint, layer, head, L): the token-cut law of the reads_past block (attention_token_fits has both blocks "
    "and every fit), the no-hair comparison with the base on the same windows, and beside it the same kind of numbers "
    "inside the weights (that layer's q and v) — 'different inside, same outside' (arXiv 2601.06788) read along one row",
    _HEAD, _SEQ_LEN,
    _c("windows", "int64", "number of windows averaged"),
    _c("token_verdict", "string", "token-cut law of the reads_past block's mean profile: " + _TOKEN_VERDICT),
    _c("token_best_fit", "string", "the reads_past law with the lowest AIC, whether or not it fits"),
    _c("token_aic_margin", "float64", "AIC of the runner-up − AIC of token_best_fit"),
    _c("token_cardy_c", "float64", "c of the Cardy fit S = a + (c/3)·ln((L/π)·sin(πℓ/L)) to the reads_past profile"),
    _c("token_cardy_r2", "float64", "R² of that Cardy fit"),
    _c("token_volume_r2", "float64", "R² of the volume-law fit S = a + b·min(ℓ, L−ℓ) to the reads_past profile"),
    _c("base_token_verdict", "string", "the base's token-cut verdict (reads_past), same rule"),
    _c("base_token_cardy_c", "float64", "c of the Cardy fit to the base's reads_past profile"),
    _c("base_token_cardy_r2", "float64", "R² of that fit"),
    _c("entropy_diff", "float64", "no-hair entropy difference: mean over the digit chain's cuts of |S_tuned − S_base| / S_base of the mean profiles (cuts with S_base = 0 left out)"),
    _c("attention_tv", "float64", "mean over windows and query rows of the total-variation distance ½‖P_tuned − P_base‖₁ of attention rows (0: the attention did not move, 1: disjoint)"),
    _c("q_delta_volume_r2", "float64", "R² of the volume-law fit S = a + b·ℓ to the MPS profile of this layer's ΔW_q (effective: LoRA/DoRA applied), with " + _ELL + "; empty when ΔW_q = 0"),
    _c("q_delta_area_r2", "float64", "R² of the area-log fit S = a + b·ln ℓ to ΔW_q's profile"),
    _c("q_delta_better_fit", "string", "area_log or volume when that fit has the higher R², R² ≥ 0.8 and an AIC lower by more than 2; else 'neither fits'"),
    _c("q_weight_entropy_diff", "float64", "mean over cuts of |S(W_q tuned) − S(W_q base)| / S(W_q base): the inside counterpart of entropy_diff"),
    _c("q_rel_change", "float64", "‖ΔW_q‖_F / ‖W_q base‖_F: the inside counterpart of attention_tv"),
    _c("v_delta_volume_r2", "float64", "the same for W_v"),
    _c("v_delta_area_r2", "float64", "the same for W_v"),
    _c("v_delta_better_fit", "string", "the same for W_v"),
    _c("v_weight_entropy_diff", "float64", "the same for W_v"),
    _c("v_rel_change", "float64", "the same for W_v"),
)

declare(
    "thresholds",
    "Hu et al.'s LoRA complexity norms per (checkpoint, layer, head, L, window) on real inputs X (the attention layer's "
    "input after its norm), in both scales the theorem can be read in, the split-free largest logit, and an "
    "extreme-value control. Hu et al. (arXiv 2406.03136) write softmax(Q·Kᵀ·β) with β = 1; the bound they borrow is "
    "Alman & Song's (arXiv 2302.13214, abstract: Q, K, V ∈ [−B, B]^{n×d}, A = exp(QKᵀ/d), a sharp transition at "
    "B = Θ(√log n)). A head computing q·kᵀ/√d_head is Alman–Song's form with d_head^(+1/4)·q and Hu's literal β = 1 "
    "form with d_head^(−1/4)·q: the scales differ by √d_head (Hu's section giving β = 1 was not found as text here; "
    "the mapping is the one issue 21 specifies). " + ASYMPTOTIC_CAVEAT,
    _HEAD,
    _c("kv_head", "int64", "the key/value head this query head reads (GQA: head // (heads / kv heads))"),
    _SEQ_LEN, _WINDOW,
    _c("d_head", "int64", "head dimension"),
    _c("gamma_q", "float64", "d_head^(−1/4)·max |X·W_Q_effᵀ + b_Q| over the head's columns, Hu et al.'s literal β = 1 form (the softmax's 1/√d_head split evenly between Q and K): the query projection as run (LoRA/DoRA and bias included); where the model normalises q (Qwen3, Gemma 3, OLMo 2: q_norm) the norm's output, the entries the softmax sees; where its logit scale is not 1/√d_head (Gemma: query_pre_attn_scalar^(−1/2)) that scale's square root in place of d_head^(−1/4)"),
    _c("gamma_k", "float64", "d_head^(−1/4)·max |X·W_Kᵀ + b_K| over the kv head's columns (Hu's literal β = 1 form; k_norm's output and the model's own scale as for gamma_q)"),
    _c("gamma_q_as", "float64", "d_head^(+1/4)·max |X·W_Q_effᵀ + b_Q|: the same maximum in Alman & Song's scale, exp(Q'·K'ᵀ/d_head) with Q' = d_head^(+1/4)·q (= √d_head·gamma_q), the entry bound B of arXiv 2302.13214"),
    _c("gamma_k_as", "float64", "d_head^(+1/4)·max |X·W_Kᵀ + b_K| (Alman–Song's scale, = √d_head·gamma_k)"),
    _c("gamma_lora", "float64", "d_head^(−1/4)·max |s·X·A_Qᵀ·B_Qᵀ|: the LoRA term of W_Q alone, Hu's scale (empty without an adapter on q)"),
    _c("gamma_lora_k", "float64", "the same for an adapter on W_K (empty without one)"),
    _c("gamma_q_rope", "float64", "gamma_q after the rotary position embedding (rotary models only, else empty)"),
    _c("gamma_k_rope", "float64", "gamma_k after the rotary position embedding (rotary models only, else empty)"),
    _c("threshold", "float64", "√ln L, the scale of Θ(√ln L) in the theorem (constants unknown)"),
    _c("ratio", "float64", "max(gamma_q, gamma_k) / √ln L in Hu's literal scale: a measurement against the scale, not an efficient/hard verdict"),
    _c("ratio_as", "float64", "max(gamma_q_as, gamma_k_as) / √ln L in Alman–Song's scale (= √d_head·ratio): a measurement, not a verdict"),
    _c("logit_max", "float64", "max over attended pairs (i, j) (j ≤ i for causal models, all pairs for bidirectional encoders) of |q_i·k_j|/√d_head (the model's own scale where it has another: Gemma's query_pre_attn_scalar^(−1/2); then Gemma 2's soft-cap c·tanh(·/c); pairs outside a sliding window are not attended), q and k after the model's q/k norms and rotary embedding where it applies them, GQA's key head shared: the largest pre-softmax logit, which needs no split of the scale (entries of Q, K in [−B, B] bound it by B², Alman–Song's B² = o(ln n))"),
    _c("ln_L", "float64", "ln L, the scale logit_max is read against: B² when the entry bound is B = √ln L (Alman–Song's transition at B = Θ(√log n))"),
    _c("evt_q", "float64", "extreme-value control σ_q·√(2 ln(L·d_head)), σ_q the standard deviation (ddof 0) of the L·d_head entries gamma_q is the largest of, in gamma_q's scale: to leading order the largest |entry| of that many Gaussian entries of that spread, which grows with L whatever the regime"),
    _c("evt_k", "float64", "the same control for gamma_k (the kv head's L·d_head entries)"),
    _c("evt_ratio_q", "float64", "gamma_q / evt_q: the largest query entry in units of the Gaussian control, the same in both scales (NaN when evt_q = 0)",
       NanWhen(where=(("evt_q", (0.0,)),))),
    _c("evt_ratio_k", "float64", "gamma_k / evt_k (NaN when evt_k = 0)", NanWhen(where=(("evt_k", (0.0,)),))),
)

declare(
    "threshold_growth",
    "per (checkpoint, layer): how the largest gamma grows with L, which is what the asymptotic theorem is about, beside "
    "the same fit to the extreme-value control (the maximum of L·d_head Gaussian entries grows like σ·√(2 ln(L·d_head)) "
    "in any regime, so growth alone says nothing about it) and the largest logit against ln L. Fit over every measured "
    "L (the demo: 32, 64, 128, 256); R² is NaN below three lengths, where a line fits two points by construction. "
    "Slopes in Alman–Song's scale are √d_head times these. " + ASYMPTOTIC_CAVEAT,
    _c("lengths", "int64", "number of window lengths measured"),
    _c("min_seq_len", "int64", "shortest L"),
    _c("max_seq_len", "int64", "longest L"),
    _c("gamma_min_len", "float64", "max over heads and windows of max(gamma_q, gamma_k) at the shortest L (Hu's scale)"),
    _c("gamma_max_len", "float64", "the same at the longest L"),
    _c("slope", "float64", "slope b of the least-squares fit gamma = a + b·√ln L of the largest gamma over the measured lengths (NaN with one length)"),
    _c("intercept", "float64", "intercept a of that fit"),
    _c("r2", "float64", "R² of that fit (NaN below three lengths)"),
    _c("evt_min_len", "float64", "max over heads and windows of max(evt_q, evt_k) at the shortest L: the largest control, gamma's scale"),
    _c("evt_max_len", "float64", "the same at the longest L"),
    _c("evt_slope", "float64", "slope of the same fit to the largest control against √ln L: what the measured slope is read beside (NaN with one length)"),
    _c("evt_intercept", "float64", "intercept of the control's fit"),
    _c("evt_r2", "float64", "R² of the control's fit (NaN below three lengths)"),
    _c("logit_min_len", "float64", "max over heads and windows of logit_max at the shortest L"),
    _c("logit_max_len", "float64", "the same at the longest L"),
    _c("logit_slope", "float64", "slope b of the least-squares fit logit = a + b·ln L of the largest logit_max (NaN with one length)"),
    _c("logit_intercept", "float64", "intercept a of that fit"),
    _c("logit_r2", "float64", "R² of that fit (NaN below three lengths)"),
)


# ---- no-hair: two fine-tunes of one base compared (lab/probes/no_hair.py, pair scope) --------------

_NO_HAIR_CI = "; _lo/_hi: the percentile bootstrap 95 % interval of the mean over windows (windows resampled with replacement, `bootstrap` resamples, seeded by the run's seed)"

declare(
    "no_hair",
    "per (pair of fine-tunes a:b of one base, layer, seq_len, measure): the 'no-hair' comparison of arXiv 2601.06788 "
    "(LoRA and full fine-tuning differ inside ΔW but not in the attention) posed on two fine-tunes instead of each against "
    "the base. Inside: distance between their ΔW_q and ΔW_v entropy profiles; outside: distances between their attention "
    "on the same windows (the windows of the attention probe's definition), each beside a's and b's distance from the base; "
    "no-hair ratio = outside / inside. The checkpoint column is 'first:second'; module and role are empty",
    _c("first", "string", "checkpoint a (earlier in the run's order)"),
    _c("second", "string", "checkpoint b"),
    _SEQ_LEN,
    _c("windows", "int64", "number of windows N the outside distances average over"),
    _c("measure", "string", "the outside distance: token_cuts (mean over heads, blocks and cuts ℓ = 1 … L−1 of |S_a(ℓ) − S_b(ℓ)| / S_base(ℓ), S(ℓ) the entropy of the normalised squared singular values of the cross block P[ℓ:, :ℓ] and, where nonzero (encoders), P[:ℓ, ℓ:]; only entries with S_base > 0), digit_chain (the same over the cuts of the prime-digit chain of P, the internal probe applied to P), rows (mean over heads and query rows of ½‖P_a − P_b‖₁), head_outputs (mean over heads of ‖O_a − O_b‖_F / ‖O_base‖_F, O_h = P_h·V_h, V the value projection's output, a GQA key/value head shared by its query heads) or layer_output (‖Y_a − Y_b‖_F / ‖Y_base‖_F, Y = [O_1 … O_H]·W_Oᵀ + b_O, the attention layer's output after its output projection, before dropout, residual and norm)"),
    _c("distance", "float64", "the measure between a and b, mean over windows" + _NO_HAIR_CI),
    _c("distance_lo", "float64", "lower end of distance's interval"),
    _c("distance_hi", "float64", "upper end of distance's interval"),
    _c("first_base", "float64", "the same measure between a and the base (normalised by the base as distance is)" + _NO_HAIR_CI),
    _c("first_base_lo", "float64", "lower end of first_base's interval"),
    _c("first_base_hi", "float64", "upper end of first_base's interval"),
    _c("second_base", "float64", "the same measure between b and the base"),
    _c("second_base_lo", "float64", "lower end of second_base's interval"),
    _c("second_base_hi", "float64", "upper end of second_base's interval"),
    _c("bootstrap", "int64", "bootstrap resamples of the windows behind each interval"),
    _c("inside_q", "float64", "mean over the cuts k of ΔW_q's prime-factor chain of |S_k(ΔW_q,a) − S_k(ΔW_q,b)| / S_page,k (ΔW = W_eff − W_base of the query projection as the model runs it; Page's value for a random state of the cut's dimensions); NaN when either update of this layer is zero (its profile is undefined)"),
    _c("inside_v", "float64", "the same for the value projection"),
    _c("inside", "float64", "(inside_q + inside_v) / 2, the inside distance; NaN when either is; no windows, so no interval"),
    _c("update_first", "float64", "the first checkpoint's update size at this layer: √(‖ΔW_q‖_F² + ‖ΔW_v‖_F²) / √(‖W_q‖_F² + ‖W_v‖_F²) (base weights), what pairs are matched on"),
    _c("update_second", "float64", "the same for the second checkpoint"),
    _c("ratio", "float64", "the no-hair ratio distance / inside (inf when inside = 0 < distance, NaN when both are 0 or inside is NaN): small when the pair differs inside more than outside"),
    _c("ratio_lo", "float64", "distance_lo / inside"),
    _c("ratio_hi", "float64", "distance_hi / inside"),
)


# ---- forgetting: what fine-tuning cost the model (lab/probes/forgetting.py, model scope) -----------

_NO_HEAD = NanWhen(where=(("objective", ("none",)),))  # a model without a language-modelling head has no distribution
_FORGET_CI = ("; _lo/_hi: the percentile bootstrap 95 % interval of the mean over windows (windows resampled with "
              "replacement, `bootstrap` resamples, seeded by the run's seed)")

declare(
    "forgetting",
    "per (checkpoint, text set, seq_len): how far the tuned model's predictions moved from the base's on the windows of "
    "the activation probes: the mean KL(p_base ‖ p_tuned) and the loss before and after, on the run's --texts and on "
    "the reference_texts option (text the model was not tuned on: what was forgotten). Module, layer and role are empty",
    _c("text_set", "string", "texts (the run's --texts, or the standard-library docstrings without it) or reference "
       "(the forgetting.reference_texts file)"),
    _c("corpus", "string", "the texts file the windows were cut from (stdlib_docstrings for the default corpus)"),
    _SEQ_LEN,
    _c("windows", "int64", "number of windows N averaged over"),
    _c("objective", "string", "next_token (a causal-LM head: positions 0 … L−2 predict the next token), masked_token (a "
       "masked-LM head: a seeded mask_fraction of each window's positions replaced by the mask token in one pass, the "
       "same for the base and every checkpoint, predicting the original tokens) or none (no language-modelling head, "
       "e.g. a bare BertModel such as the packaged MiniLM: no distribution, so no KL and no loss)"),
    _c("positions", "int64", "predicted positions per window (L − 1, or the masked count; 0 without a head)"),
    _c("kl", "float64", "mean over windows and positions of KL(p_base ‖ p_tuned) = Σ_v p_base(v)·ln(p_base(v)/p_tuned(v)) "
       "in nats, log-softmaxes in float64 from the models' float32 logits" + _FORGET_CI + "; empty when objective is none",
       _NO_HEAD),
    _c("kl_lo", "float64", "lower end of kl's interval", _NO_HEAD),
    _c("kl_hi", "float64", "upper end of kl's interval", _NO_HEAD),
    _c("base_loss", "float64", "the base's mean cross-entropy in nats per predicted token at the same positions (next "
       "token, or the original token at a masked position); empty when objective is none", _NO_HEAD),
    _c("tuned_loss", "float64", "the checkpoint's mean cross-entropy at the same positions; empty when objective is none",
       _NO_HEAD),
    _c("loss_change", "float64", "tuned_loss − base_loss (positive: the checkpoint predicts these texts worse than the "
       "base)" + _FORGET_CI + "; empty when objective is none", _NO_HEAD),
    _c("loss_change_lo", "float64", "lower end of loss_change's interval", _NO_HEAD),
    _c("loss_change_hi", "float64", "upper end of loss_change's interval", _NO_HEAD),
    _c("note", "string", "why kl and the losses are empty (objective none), else empty"),
)

declare(
    "forgetting_layers",
    "per (checkpoint, text set, seq_len, hidden state): how far the tuned model's hidden states moved from the base's "
    "on the same windows as the forgetting table (for masked-LM models, the masked windows); module and role are empty",
    _c("text_set", "string", "texts or reference, as in the forgetting table"),
    _SEQ_LEN,
    _c("windows", "int64", "number of windows N averaged over"),
    _c("hidden_state", "int64", "index into transformers' output_hidden_states: 0 the embeddings' output (layer empty), "
       "k the output of block k − 1 (= layer); the last as the model returns it (after the final norm in LLaMA-style "
       "models)"),
    _c("cosine_distance", "float64", "mean over windows and positions of 1 − cos(h_base, h_tuned), computed as "
       "½‖h_base/‖h_base‖ − h_tuned/‖h_tuned‖‖² (0 for identical states)" + _FORGET_CI),
    _c("cosine_distance_lo", "float64", "lower end of cosine_distance's interval"),
    _c("cosine_distance_hi", "float64", "upper end of cosine_distance's interval"),
    _c("relative_distance", "float64", "mean over windows and positions of ‖h_tuned − h_base‖ / ‖h_base‖"),
)


# ---- esd: WeightWatcher's heavy-tailed metrics (lab/probes/esd.py, lab/probes/powerlaw.py) ----------

_NO_FIT = NanWhen(below=(("num_fitted", 2),), zero_matrix=True)  # fewer than two eigenvalues above 1e-5: no fit
_NO_SHUFFLE = NanWhen(where=(("rand_distance", (None,)),), zero_matrix=True)  # randomize off, or a streamed matrix
_WW = " (WeightWatcher 0.7's details column of the same name)"

declare(
    "esd",
    "one row per analysed matrix: WeightWatcher's heavy-tailed self-regularization metrics of its eigenvalues λ = σ² "
    "(squared singular values, not divided by N: WeightWatcher's default normalize=False), from the spectra probe's exact singular values",
    _c("source", "string", "what was analysed: delta (ΔW), weight (the base W), tuned (W + ΔW; not for streamed matrices), "
       "random or random_lora (the run's controls, as in the spectra table)"),
    _c("rows", "int64", "rows of the matrix"),
    _c("cols", "int64", "columns of the matrix"),
    _c("num_evals", "int64", "min(rows, cols): the eigenvalues of MᵀM or MMᵀ, zeros included" + _WW),
    _c("num_fitted", "int64", "eigenvalues above 1e-5 (WeightWatcher's EVALS_THRESH), the values the power-law fit saw"),
    _c("lambda_max", "float64", "largest eigenvalue λ_max = σ₁²" + _WW),
    _c("alpha", "float64", "power-law exponent α = 1 + n / Σ ln(λ_i / xmin) over the n eigenvalues ≥ xmin (Clauset, Shalizi & Newman 2009); "
       "below 20 eigenvalues above 1e-5 (esd.small_sample, on by default) WeightWatcher 0.7.7's rule: α = 1 + (n − 1) / Σ ln(λ_i / xmin) over "
       "tails of at least 8; NaN with fewer than two eigenvalues above 1e-5 (or all of a small sample equal)" + _WW, _NO_FIT),
    _c("xmin", "float64", "the eigenvalue chosen as the tail's start: the candidate with the smallest D" + _WW, _NO_FIT),
    _c("xmax", "float64", "largest fitted eigenvalue (= lambda_max)" + _WW, _NO_FIT),
    _c("D", "float64", "Kolmogorov–Smirnov distance of the fit, max over tail values of |P(λ_i) − i/n| as WeightWatcher's WWFit computes it" + _WW, _NO_FIT),
    _c("sigma", "float64", "standard error of α, (α − 1)/√n" + _WW, _NO_FIT),
    _c("num_pl_spikes", "int64", "eigenvalues ≥ xmin: the size of the fitted tail (0 without a fit)" + _WW),
    _c("log_norm", "float64", "log10 Σλ = log10 ‖M‖_F²" + _WW, NanWhen(zero_matrix=True)),
    _c("log_spectral_norm", "float64", "log10 λ_max" + _WW, NanWhen(zero_matrix=True)),
    _c("alpha_weighted", "float64", "α · log10 λ_max" + _WW, _NO_FIT),
    _c("log_alpha_norm", "float64", "log10 Σ λ^α (the Schatten α-norm's log)" + _WW, _NO_FIT),
    _c("stable_rank", "float64", "Σλ / λ_max (= the spectra table's stable_rank)" + _WW, NanWhen(zero_matrix=True)),
    _c("mp_softrank", "float64", "λ₊ / λ_max with λ₊ = v·(√rows + √cols)², the Marchenko–Pastur bulk edge of i.i.d. entries of M's mean square "
       "v = Σλ/(rows·cols) (Martin & Mahoney 2018): a closed form, comparable with WeightWatcher's ww_softrank, not its KDE-fitted mp_softrank",
       NanWhen(zero_matrix=True)),
    _c("rand_distance", "float64", "Jensen–Shannon distance (natural log) between the ascending eigenvalues of M and of M with its entries shuffled "
       "(seeded by the run's seed), each vector normalised to sum 1" + _WW + "; NaN when the esd.randomize option is off or M is streamed",
       _NO_SHUFFLE),
    _c("max_rand_eval", "float64", "largest eigenvalue of the shuffled matrix" + _WW + "; NaN as rand_distance", _NO_SHUFFLE),
    _c("num_rand_spikes", "float64", "eigenvalues of M above max_rand_eval: spikes the same entries in random places do not make; NaN as rand_distance",
       _NO_SHUFFLE),
)


# ---- intruders: the ε × k sweep of intruder dimensions (lab/probes/intruders.py; needs --base) -------

_SIDE = _c("side", "string", "left (output) or right (input) singular vectors: W_ft's on that side against all of W's on the same side")

declare(
    "intruders",
    "per module, side, depth k and threshold ε: the intruder dimensions among the top-k singular vectors of W_ft = W + ΔW "
    "(Shuttleworth et al. 2024, 'LoRA vs Full Fine-tuning: An Illusion of Equivalence'; the spectra table's definition, on both sides). "
    "Needs W and ΔW in memory: a dense update streamed from disk (above 64 MiB of float64, lab.analyze's stream_bytes) gets no rows yet",
    _SIDE,
    _c("top_k", "int64", "k: how many leading singular vectors of W + ΔW the row counts over (intruders.ks option)"),
    _c("examined", "int64", "min(k, vectors W + ΔW has with σ > 0): fewer than top_k for a matrix with fewer dimensions"),
    _c("threshold", "float64", "ε (intruders.thresholds option): a vector is an intruder when its largest |cos| with W's singular vectors of the same side is below ε"),
    _c("intruder_count", "int64", "number of intruders among the top-k vectors at this ε (= intruder_vectors rows with index ≤ k and max_cos < ε)"),
)

declare(
    "intruder_vectors",
    "per module, side and examined singular vector of W + ΔW (the top max(ks)): its singular value and largest |cos| with W's, "
    "so any (ε, k) can be counted later",
    _SIDE,
    _c("index", "int64", "position j of the vector in W + ΔW's descending spectrum, from 1"),
    _c("sigma", "float64", "its singular value σ_j of W + ΔW"),
    _c("max_cos", "float64", "max_i |cos(y_j, x_i)| over all singular vectors x_i of W with σ > 0 on the same side (exact: from W's leading "
       "vectors when they certify it, else from all of them); 0 when W is zero"),
)


# ---- adapter_similarity: the geometry between updates of one module (lab/probes/adapter_similarity.py, group scope) ----

_NOT_COMPARED = NanWhen(where=(("note", ("a streamed update, or shapes differ: not compared",)),))
_PAIR_FIRST = _c("first", "string", "member a of the pair (earlier in the run's order); the checkpoint column joins the group's members with '+'")
_PAIR_SECOND = _c("second", "string", "member b of the pair")

declare(
    "adapter_similarity",
    "per module and pair (a, b) of the adapters or checkpoints that have it (group scope): how alike the two updates are",
    _PAIR_FIRST,
    _PAIR_SECOND,
    _c("top_k", "int64", "k of the principal angles: min(adapter_similarity.top_k option (8), rank of either update)", _NOT_COMPARED),
    _c("cosine", "float64", "⟨ΔW_a, ΔW_b⟩_F / (‖ΔW_a‖_F ‖ΔW_b‖_F), from the factors (s_a s_b Σ (B_aᵀB_b) ∘ (A_a A_bᵀ)) when both are s·B·A; "
       "NaN when either update is zero", NanWhen(where=(("note", ("a streamed update, or shapes differ: not compared",)),), zero_matrix=True)),
    _c("sign_conflict", "float64", "among the entries where both updates are nonzero, the fraction with opposite signs (the conflicts "
       "TIES-merging resolves; 0.5 for independent random updates); rows built in blocks; NaN when no entry is nonzero in both",
       NanWhen(where=(("note", ("a streamed update, or shapes differ: not compared",)),), zero_matrix=True)),
    _c("grassmann_left", "float64", "Grassmann distance √Σθ_i² (radians) between the top-k left singular subspaces (θ: principal angles, "
       "cos θ the singular values of U_aᵀU_b; 0 = same subspace, k·π/2 orthogonal)", _NOT_COMPARED),
    _c("grassmann_right", "float64", "the same for the right singular subspaces", _NOT_COMPARED),
    _c("min_angle_left", "float64", "smallest principal angle θ_1 between the top-k left subspaces (radians): 0 when they share a direction",
       NanWhen(where=(("note", ("a streamed update, or shapes differ: not compared",)), ("top_k", (0,))))),
    _c("min_angle_right", "float64", "the same for the right subspaces",
       NanWhen(where=(("note", ("a streamed update, or shapes differ: not compared",)), ("top_k", (0,))))),
    _c("note", "string", "why a pair was not compared (empty when it was)"),
)

declare(
    "subspace_similarity",
    "per module, pair (a, b) and side: the LoRA paper's normalised subspace similarity φ(i, j) (Hu et al. 2021, as issue 25 states it) on a grid of i, j",
    _PAIR_FIRST,
    _PAIR_SECOND,
    _c("side", "string", "left (output) or right (input) singular vectors"),
    _c("i", "int64", "dimension i of a's top singular subspace: 1, 2, 4, … below min(rank, max_dim option (64)), then that value"),
    _c("j", "int64", "dimension j of b's top singular subspace, on the same grid for b"),
    _c("phi", "float64", "φ(i, j) = ‖U_a,iᵀ U_b,j‖²_F / min(i, j): 1 when the smaller subspace lies in the larger, 0 orthogonal; "
       "random subspaces of Rⁿ give about max(i, j)/n"),
)
