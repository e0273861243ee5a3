"""The geometry between updates family (adapter_similarity, subspace_similarity): its theory, findings, headline figure and section."""

from __future__ import annotations

from lab.present.family import Family

THEORY = (
    'The same module across several adapters or checkpoints of one run, per pair (a, b): the cosine between the '
    'updates as vectors, ⟨ΔW_a, ΔW_b⟩_F/(‖ΔW_a‖_F‖ΔW_b‖_F), from the factors for s·B·A (two independent random m×n '
    'updates give about ±1/√(m·n)); the subspace similarity of the LoRA paper (Hu et al. 2021) as issue 25 states '
    'it, φ(i, j) = ‖U_a,iᵀ U_b,j‖_F²/min(i, j) between the top-i and top-j left (and right) singular vectors, 1 '
    'when the smaller subspace lies in the larger, about max(i, j)/m for random ones; the principal angles θ of the'
    ' top-k subspaces (cos θ: the singular values of U_aᵀU_b) and the Grassmann distance √Σθ²; and the '
    'sign-conflict rate, among entries nonzero in both, the fraction whose signs differ (the conflicts TIES-merging'
    ' resolves by electing a sign; 0.5 for independent updates). Checkpoints of one training run show how the '
    "update turns as it grows (adjacent checkpoints' cosine); adapters of different tasks show how alike their "
    'updates are before they are merged.'
)

FAMILY = Family(
    'similarity', 'Geometry between updates', ('adapter_similarity', 'subspace_similarity'), THEORY,
    icon=':material/grid_on:',
    hint='Run `lab analyze A B ... --probes adapter_similarity` on two or more adapters or a training output with checkpoint-N/ folders to add it.',
)
