"""The lora norm thresholds family (thresholds, threshold_growth, windows): its theory, findings, headline figure and section."""

from __future__ import annotations

from lab.present.family import Family

THEORY = (
    "Hu et al., 'Computational Limits of Low-Rank Adaptation' (arXiv 2406.03136): with X the input of an attention "
    "layer, LoRA's gradient admits almost-linear-time algorithms when ‖X·W_Q,eff‖_∞ and ‖X·W_K‖_∞ are o(√ln L), and"
    ' no sub-quadratic one above Θ(√ln L) (under SETH). Hu et al. write softmax(Q·Kᵀ·β) with β = 1; the bound they '
    "borrow is Alman & Song's (arXiv 2302.13214), exp(Q·Kᵀ/d) with entries of Q, K in [−B, B] and a sharp "
    "transition at B = Θ(√log n). A head computing q·kᵀ/√d_head is Hu's literal form with d_head^(−1/4)·q (γ_q, "
    "γ_k, ratio) and Alman–Song's with d_head^(+1/4)·q (γ_q_as, γ_k_as, ratio_as): the scales differ by √d_head. "
    'Measured per layer, head, L and window on real inputs, with the LoRA term alone and the split-free largest '
    'logit |q_i·k_j|/√d_head over attended pairs against ln L (B² when B = √ln L). The maximum of L·d_head Gaussian'
    ' entries of spread σ grows like σ·√(2 ln(L·d_head)) in any regime, so each γ is read beside that extreme-value'
    " control, and per layer the growth of the largest γ with √ln L beside the control's (R² from three lengths). "
    'The bound is asymptotic and its constants unknown: the figures show measurements against the scale, never a '
    'verdict.'
)

FAMILY = Family(
    'thresholds', 'LoRA norm thresholds', ('thresholds', 'threshold_growth', 'windows'), THEORY,
    icon=':material/speed:',
    hint='Run `lab analyze ... --probes thresholds` to add it (needs a tokenizer).',
)
