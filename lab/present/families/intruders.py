"""The intruder dimensions (ε × k sweep) family (intruders, intruder_vectors): its theory, findings, headline figure and section."""

from __future__ import annotations

from lab.present.family import Family

THEORY = (
    "Shuttleworth, Andreas, Torralba & Sharma, 'LoRA vs Full Fine-tuning: An Illusion of Equivalence' (arXiv "
    "2410.21228), write that 'weight matrices trained with LoRA have new, high-ranking singular vectors, which we "
    "call intruder dimensions, while those trained with full fine-tuning do not'. A singular vector y_j among the "
    'top k of W_ft = W + ΔW is an intruder when max_i |cos(y_j, x_i)| < ε over all singular vectors x_i of the '
    'pre-trained W on the same side. The table counts them for every ε ∈ {0.1, …, 0.9} and k ∈ {10, 20, 50, 100} '
    '(options), for the left (output) and the right (input) vectors, from one number per examined vector '
    '(intruder_vectors keeps it with σ_j, so any other threshold can be applied later). The count grows with ε and '
    'with k by construction; what a run shows is where, and how many against a full fine-tune of the same base.'
)

FAMILY = Family(
    'intruders', 'Intruder dimensions (ε × k sweep)', ('intruders', 'intruder_vectors'), THEORY,
    icon=':material/call_split:',
    hint='Run `lab analyze ... --base BASE --probes intruders` to add it.',
)
