"""The internal entanglement family (entanglement, entanglement_summary): its theory, findings, headline figure and section."""

from __future__ import annotations

from lab.present.family import Family

THEORY = (
    'ΔW (m×n) is read as a quantum state ψ = vec(ΔW)/‖ΔW‖_F on a chain of sites: the prime factors of m, then those'
    ' of n. At each cut k the squared singular values p_i of ψ reshaped to (D_left, D_right) give the von Neumann '
    "entropy S_k = −Σ p_i ln p_i in nats. Two baselines: the maximum ln min(D_left, D_right), and Page's mean "
    'entropy of a random state, S_Page ≈ ln d_A − d_A/(2 d_B) for d_A ≤ d_B (Page, Phys. Rev. Lett. 71, 1291, '
    "1993). At the row|column cut S is the entropy of ΔW's normalised squared singular values, so a rank-r update "
    "has S ≤ ln r there: the entanglement valley, while the outer cuts follow a volume law near Page's curve. "
    "Controls show where 'no structure' sits for each shape: a Gaussian matrix (source = random) and, for a rank-r "
    'adapter, a product of Gaussian factors of rank r (source = random_lora, an untrained LoRA).'
)

FAMILY = Family(
    'entanglement', 'Internal entanglement', ('entanglement', 'entanglement_summary'), THEORY,
    icon=':material/timeline:',
    hint='Run `lab analyze ... --probes entanglement` to add it.',
)
