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
    order: int = 0  # declaration order: documents list tables in it, whatever the dict's order

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
    order = TABLES[name].order if name in TABLES else len(TABLES)
    table = Table(name, description, (ID_COLUMNS if id_columns else ()) + tuple(columns), order)
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
    _c("entropy", "float64", "von Neumann entropy −Σ p ln p of the squared Schmidt values at this cut, nats (NaN for a zero or non-finite matrix)"),
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
    _c("rank_bound", "int64", "largest possible rank: r for adapters (and random_lora), min(rows, cols) otherwise"),
    _c("sites", "string", "the site chain as text: the prime factors of rows, a vertical bar, then those of cols (12×18 gives 2·2·3, bar, 2·3·3)"),
    _c("n_sites", "int64", "number of sites N"),
    _c("row_sites", "int64", "number of row sites"),
    _c("valley_cut", "int64", "the row-column cut (= row_sites); empty for 1×n and m×1 matrices"),
    _c("valley_entropy", "float64", "entropy at the valley cut (= ln of the entropy rank of the singular values), nats"),
    _c("valley_max_entropy", "float64", "ln min(rows, cols): the largest entropy the valley cut allows"),
    _c("valley_page_entropy", "float64", "Page's mean entropy at the valley cut (a random matrix of this shape)"),
    _c("valley_depth", "float64", "Page's value minus the entropy at the valley cut, nats: how far below chance the row-column cut sits"),
    _c("page_ratio_mean", "float64", "mean over all cuts of entropy / Page's value (1 ≈ random)"),
    _c("volume_slope", "float64", "slope b of the least-squares fit entropy = a + b·ln min(D_left, D_right) over the cuts away from the valley: every cut but the valley where the rank bound r cannot cap the Schmidt rank (r·rows/D_left ≥ min(D_left, D_right) inside the row sites, r·cols/D_right ≥ min(D_left, D_right) inside the column sites); NaN with fewer than two such cuts"),
    _c("volume_intercept", "float64", "intercept a of that fit, nats"),
    _c("volume_cuts", "int64", "number of cuts in the volume-law fit"),
    _c("page_slope", "float64", "the same fit to Page's values on the same cuts: the slope a random matrix would give"),
)

declare(
    "spectra",
    "one row per analysed matrix: norms and ranks from its singular values; with a base, alignment of ΔW with W and intruder directions",
    _SOURCE,
    _c("rows", "int64", "rows of the matrix"),
    _c("cols", "int64", "columns of the matrix"),
    _c("rank_bound", "int64", "largest possible rank: r for adapters (and random_lora), min(rows, cols) otherwise"),
    _c("fro_norm", "float64", "Frobenius norm √Σσ²"),
    _c("spectral_norm", "float64", "largest singular value σ₁"),
    _c("stable_rank", "float64", "‖M‖²_F / ‖M‖²₂ (Rudelson & Vershynin 2007)"),
    _c("effective_rank", "float64", "exp of the Shannon entropy of σ/Σσ (Roy & Vetterli 2007)"),
    _c("entropy_rank", "float64", "exp of the Shannon entropy of σ²/Σσ² (= exp of the entanglement entropy at the row-column cut)"),
    _c("energy_rank_90", "int64", "fewest leading singular values holding 90 % of Σσ²"),
    _c("energy_rank_99", "int64", "fewest leading singular values holding 99 % of Σσ²"),
    _c("numerical_rank", "int64", "number of σ > σ₁·max(rows, cols)·ε_float64 (numpy.linalg.matrix_rank's tolerance; adapters: from the r×r core)"),
    _c("utilization", "float64", "effective_rank / rank_bound"),
    _c("overlap_k", "int64", "dimension k of the singular subspaces compared: min(top_k option (16), numerical rank of ΔW); empty without a base"),
    _c("overlap_left", "float64", "mean cos² of the principal angles between the top-k left (output) singular subspaces of ΔW and W: 1 same, 0 orthogonal"),
    _c("overlap_right", "float64", "the same for the right (input) singular subspaces"),
    _c("overlap_left_random", "float64", "k/rows: the expected overlap_left of random subspaces, the baseline to read it against"),
    _c("overlap_right_random", "float64", "k/cols: the expected overlap_right of random subspaces"),
    _c("intruder_top", "int64", "how many leading left singular vectors of W + ΔW were examined for intruders (10, as in Shuttleworth et al. 2024)"),
    _c("intruder_threshold", "float64", "ε: a vector is an intruder when its largest absolute cosine with W's left singular vectors (all of them unless the intruder_reference option limits them) is below ε"),
    _c("intruder_count", "int64", "number of intruder directions among the examined vectors (Shuttleworth et al. 2024, 'LoRA vs Full Fine-tuning: An Illusion of Equivalence')"),
    _c("intruder_min_cos", "float64", "smallest of the examined vectors' largest absolute cosine with W's singular vectors"),
)

declare(
    "singular_values",
    "one row per singular value of each analysed matrix (adapters: the r values of the core, the rest are zero)",
    _SOURCE,
    _c("index", "int64", "position of σ in descending order, from 1"),
    _c("sigma", "float64", "the singular value σ_k"),
    _c("energy_fraction", "float64", "σ_k² / Σσ²"),
    _c("cumulative_energy", "float64", "Σ_{i≤k} σ_i² / Σσ²"),
)
