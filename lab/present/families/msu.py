"""The minimal semantic units family (msu, msu_units, msu_similarity): its theory, findings, headline figure and section."""

from __future__ import annotations

from lab.present.family import Family

THEORY = (
    'LoRA-LEGO (arXiv 2409.16167): rank i of an adapter, U_i = s·b_i·a_iᵀ, is a minimal semantic unit and ΔW = Σ_i '
    "U_i. Per module: each unit's size c_i = ‖U_i‖_F, its own share c_i²/Σc² and its Gram-weighted share ⟨U_i, "
    'ΔW⟩_F/‖ΔW‖_F² (the units are not orthogonal; the difference is the cross-term energy), the effective number of'
    " units exp(H(own shares)) between 1 and r, the largest |cos| between the a_i's and between the b_i's, and the "
    'check that permuting the ranks of B and A together leaves ΔW unchanged (machine precision).'
)

FAMILY = Family(
    'msu', 'Minimal semantic units', ('msu', 'msu_units', 'msu_similarity'), THEORY,
    icon=':material/extension:',
    hint='Run `lab analyze ADAPTER --probes msu` to add it.',
)
