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
    Family(
        "esd", "Heavy-tailed spectra (WeightWatcher's metrics)", ("esd",),
        "For the base W, the fine-tuned W + ΔW and ΔW itself: the eigenvalues λ = σ² of the matrix (not divided by N, "
        "WeightWatcher's default) and a power law p(λ) ∝ λ^(−α) fitted to their tail as Clauset, Shalizi & Newman (SIAM "
        "Review 51, 661, 2009) fit one and WeightWatcher's default fit='PL' does: xmin, the tail's start, is the candidate "
        "with the smallest Kolmogorov–Smirnov distance D, and α = 1 + n / Σ ln(λ_i/xmin) over the n eigenvalues ≥ xmin "
        "(below 20 eigenvalues WeightWatcher 0.7.7's small-sample rule). A smaller α is a heavier tail. The columns keep "
        "WeightWatcher's details names (alpha, xmin, D, num_pl_spikes, alpha_weighted = α·log10 λ_max, log_norm, "
        "log_spectral_norm, log_alpha_norm, stable_rank), so a notebook written for WeightWatcher reads them. Controls "
        "beside the fit: the Marchenko–Pastur bulk edge of i.i.d. entries of the same mean square over λ_max "
        "(mp_softrank), and the spectrum of the same matrix with its entries shuffled (seeded): its largest λ "
        "(max_rand_eval), the λ above it (num_rand_spikes) and the Jensen–Shannon distance between the two spectra "
        "(rand_distance). The findings read α of W + ΔW beside α of W, module by module: how far fine-tuning moved it.",
    ),
    Family(
        "intruders", "Intruder dimensions (ε × k sweep)", ("intruders", "intruder_vectors"),
        "Shuttleworth, Andreas, Torralba & Sharma, 'LoRA vs Full Fine-tuning: An Illusion of Equivalence' (arXiv "
        "2410.21228), write that 'weight matrices trained with LoRA have new, high-ranking singular vectors, which we "
        "call intruder dimensions, while those trained with full fine-tuning do not'. A singular vector y_j among the "
        "top k of W_ft = W + ΔW is an intruder when max_i |cos(y_j, x_i)| < ε over all singular vectors x_i of the "
        "pre-trained W on the same side. The table counts them for every ε ∈ {0.1, …, 0.9} and k ∈ {10, 20, 50, 100} "
        "(options), for the left (output) and the right (input) vectors, from one number per examined vector "
        "(intruder_vectors keeps it with σ_j, so any other threshold can be applied later). The count grows with ε "
        "and with k by construction; what a run shows is where, and how many against a full fine-tune of the same base.",
    ),
    Family(
        "attention", "External entanglement (attention)",
        ("attention_summary", "attention_token_fits", "attention_token_cuts", "attention_entanglement", "windows"),
        "The base and each checkpoint run with eager attention on the same token windows of exactly L tokens. For each "
        "head's L×L attention matrix P and each cut after ℓ tokens, the cross block P[ℓ:, :ℓ] (queries after the cut "
        "reading keys before it; for encoders also P[:ℓ, ℓ:]) gets the entropy S(ℓ) of its normalised squared singular "
        "values: the 'token–token correlations' that arXiv 2601.06788 reports to follow 'an area law with logarithmic "
        "corrections' (its 'Attention Cardy Formula'). Over ℓ in tokens three laws are fitted to the windows' mean "
        "profile: Cardy's chord S = a + (c/3)·ln((L/π)·sin(πℓ/L)), a volume law S = a + b·min(ℓ, L−ℓ) and a constant; "
        "a law is the verdict only with an AIC lower by more than 2 and R² ≥ 0.8, else 'neither fits'. The digit-chain "
        "profile (the internal probe applied to P: cuts split index digits, not tokens) is kept beside it, unfitted. The "
        "'no-hair' claim (LoRA and full fine-tuning differ inside ΔW, not in the attention) is one comparison: how "
        "far the tuned attention moved from the base's (total variation of rows, relative entropy difference) beside "
        "how far the layer's W_q and W_v moved (‖ΔW‖_F/‖W‖_F).",
    ),
    Family(
        "no_hair", "No-hair: LoRA beside full fine-tuning", ("no_hair",),
        "arXiv 2601.06788 finds that LoRA and full fine-tuning leave distinct internal signatures, yet 'such "
        "differences do not manifest in the attention outputs'. Posed on two fine-tunes a and b of one base, per layer "
        "and window length: inside, the mean over cuts of |S_a(ΔW) − S_b(ΔW)| / S_Page for the query and the value "
        "projection (the internal entanglement profiles of the two updates); outside, on the same token windows, the "
        "token-cut and digit-chain attention profiles (|S_a(P) − S_b(P)| / S_base(P)), the attention rows "
        "(½‖P_a − P_b‖₁), the heads' outputs O = P·V and the layer's output after W_O (‖O_a − O_b‖_F / ‖O_base‖_F), "
        "each beside a's and b's own distance from the base, with bootstrap 95 % intervals over windows. The no-hair "
        "ratio is outside / inside. Pairs are matched on update size (√(‖ΔW_q‖² + ‖ΔW_v‖²)/√(‖W_q‖² + ‖W_v‖²) within "
        "a factor 1.5); a verdict ('closer' to each other than to the base, or 'farther') is stated only where the "
        "intervals separate, otherwise 'not separable'.",
    ),
    Family(
        "forgetting", "Forgetting: what fine-tuning cost the model", ("forgetting", "forgetting_layers", "windows"),
        "The base and each checkpoint run on the same token windows of two text sets: the run's --texts (normally the "
        "fine-tuning data) and --reference-texts (text it was not tuned on, where a change is what was forgotten). "
        "Per window, KL(p_base ‖ p_tuned) = Σ_v p_base(v)·ln(p_base(v)/p_tuned(v)) in nats of the next-token "
        "distributions (decoders, positions 0 … L−2) or of the masked-token ones (encoders with a masked-LM head, a "
        "seeded fraction of positions masked, the same for every model); the cross-entropy of the base and of the "
        "tuned model at the same positions (loss change = tuned − base); and per hidden state the cosine distance "
        "1 − cos(h_base, h_tuned). Means over windows with bootstrap 95 % intervals; which text set moved more is "
        "stated only where the intervals separate. Biderman et al., 'LoRA Learns Less and Forgets Less' (TMLR 2024), "
        "find that 'LoRA better maintains the base model's performance on tasks outside the target domain' and note "
        "that 'it is trivial that models that change less when finetuned to a new target domain, will forget less of "
        "the source domain': the findings therefore put each run's KL on the reference texts beside the size of its "
        "update (‖ΔW‖_F) and its intruder count, rather than beside the method's name.",
    ),
    Family(
        "thresholds", "LoRA norm thresholds", ("thresholds", "threshold_growth", "windows"),
        "Hu et al., 'Computational Limits of Low-Rank Adaptation' (arXiv 2406.03136): with X the input of an attention "
        "layer, LoRA's gradient admits almost-linear-time algorithms when ‖X·W_Q,eff‖_∞ and ‖X·W_K‖_∞ are o(√ln L), "
        "and no sub-quadratic one above Θ(√ln L) (under SETH). Hu et al. write softmax(Q·Kᵀ·β) with β = 1; the bound "
        "they borrow is Alman & Song's (arXiv 2302.13214), exp(Q·Kᵀ/d) with entries of Q, K in [−B, B] and a sharp "
        "transition at B = Θ(√log n). A head computing q·kᵀ/√d_head is Hu's literal form with d_head^(−1/4)·q (γ_q, "
        "γ_k, ratio) and Alman–Song's with d_head^(+1/4)·q (γ_q_as, γ_k_as, ratio_as): the scales differ by √d_head. "
        "Measured per layer, head, L and window on real inputs, with the LoRA term alone and the split-free largest "
        "logit |q_i·k_j|/√d_head over attended pairs against ln L (B² when B = √ln L). The maximum of L·d_head Gaussian "
        "entries of spread σ grows like σ·√(2 ln(L·d_head)) in any regime, so each γ is read beside that extreme-value "
        "control, and per layer the growth of the largest γ with √ln L beside the control's (R² from three lengths). "
        "The bound is asymptotic and its constants unknown: the figures show measurements against the scale, never a verdict.",
    ),
    Family(
        "msu", "Minimal semantic units", ("msu", "msu_units", "msu_similarity"),
        "LoRA-LEGO (arXiv 2409.16167): rank i of an adapter, U_i = s·b_i·a_iᵀ, is a minimal semantic unit and "
        "ΔW = Σ_i U_i. Per module: each unit's size c_i = ‖U_i‖_F, its own share c_i²/Σc² and its Gram-weighted share "
        "⟨U_i, ΔW⟩_F/‖ΔW‖_F² (the units are not orthogonal; the difference is the cross-term energy), the effective "
        "number of units exp(H(own shares)) between 1 and r, the largest |cos| between the a_i's and between the b_i's, "
        "and the check that permuting the ranks of B and A together leaves ΔW unchanged (machine precision).",
    ),
    Family(
        "msu_pairs", "Several adapters: stacking vs averaging", ("msu_pairs",),
        "For several adapters of one base, per module: concatenating their units, [B_1 … B_J]·[s_1A_1; …; s_JA_J], "
        "equals summing their updates exactly (any ranks and scales; FLoRA's stacking), while index-wise averaging "
        "of the factors (PEFT's 'linear', FedAvg) adds cross terms B_j·A_k (FLoRA's aggregation noise). Its relative "
        "error against the exact mean depends on the arbitrary order of ranks: its spread over seeded rank "
        "permutations shows by how much.",
    ),
    Family(
        "similarity", "Geometry between updates", ("adapter_similarity", "subspace_similarity"),
        "The same module across several adapters or checkpoints of one run, per pair (a, b): the cosine between the "
        "updates as vectors, ⟨ΔW_a, ΔW_b⟩_F/(‖ΔW_a‖_F‖ΔW_b‖_F), from the factors for s·B·A (two independent random "
        "m×n updates give about ±1/√(m·n)); the subspace similarity of the LoRA paper (Hu et al. 2021) as issue 25 "
        "states it, φ(i, j) = ‖U_a,iᵀ U_b,j‖_F²/min(i, j) between the top-i and top-j left (and right) singular "
        "vectors, 1 when the smaller subspace lies in the larger, about max(i, j)/m for random ones; the principal "
        "angles θ of the top-k subspaces (cos θ: the singular values of U_aᵀU_b) and the Grassmann distance √Σθ²; "
        "and the sign-conflict rate, among entries nonzero in both, the fraction whose signs differ (the conflicts "
        "TIES-merging resolves by electing a sign; 0.5 for independent updates). Checkpoints of one training run "
        "show how the update turns as it grows (adjacent checkpoints' cosine); adapters of different tasks show "
        "how alike their updates are before they are merged.",
    ),
    Family(
        "merge", "Merges", ("merge", "merge_eval"),
        "lab merge writes a loadable PEFT adapter from several adapters and records, per module, its relative "
        "Frobenius error against the exact weighted sum T = Σ_j w_j·s_j·B_j·A_j: stack (exact, by concatenation), "
        "linear (index-wise average: cross terms), svd (the best rank-k approximation of T), lego (LoRA-LEGO, arXiv "
        "2409.16167: k-means over the pooled units, each centroid rescaled to its members' mean norm, the output "
        "× √(r/k); data-free) and lego-oracle (the lab's earlier variant, output scale fitted to T itself: an oracle). "
        "The floor for any merge of rank k is the Eckart–Young error √(Σ_{i>k} σ_i²)/‖T‖_F, drawn beside the "
        "methods; svd reaches it by construction, so merges are also judged by what LEGO claims, several tasks in "
        "one adapter: with --eval-texts, the held-out loss of the merge, of each input adapter and of the base on "
        "each text set (merge_eval), under the base's own fine-tuning objective.",
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
