"""The no-hair: lora beside full fine-tuning family (no_hair): its theory, findings, headline figure and section."""

from __future__ import annotations

from lab.present.family import Family

THEORY = (
    "arXiv 2601.06788 finds that LoRA and full fine-tuning leave distinct internal signatures, yet 'such "
    "differences do not manifest in the attention outputs'. Posed on two fine-tunes a and b of one base, per layer "
    'and window length: inside, the mean over cuts of |S_a(ΔW) − S_b(ΔW)| / S_Page for the query and the value '
    'projection (the internal entanglement profiles of the two updates); outside, on the same token windows, the '
    'token-cut and digit-chain attention profiles (|S_a(P) − S_b(P)| / S_base(P)), the attention rows (½‖P_a − '
    "P_b‖₁), the heads' outputs O = P·V and the layer's output after W_O (‖O_a − O_b‖_F / ‖O_base‖_F), each beside "
    "a's and b's own distance from the base, with bootstrap 95 % intervals over windows. The no-hair ratio is "
    'outside / inside. Pairs are matched on update size (√(‖ΔW_q‖² + ‖ΔW_v‖²)/√(‖W_q‖² + ‖W_v‖²) within a factor '
    "1.5); a verdict ('closer' to each other than to the base, or 'farther') is stated only where the intervals "
    "separate, otherwise 'not separable'."
)

FAMILY = Family(
    'no_hair', 'No-hair: LoRA beside full fine-tuning', ('no_hair',), THEORY,
    icon=':material/compare_arrows:',
    hint='Run `lab analyze A B ... --base BASE --probes no_hair` (two or more fine-tunes of one base, with a tokenizer) to add it; `--set no_hair.pairs=a:b` limits it to chosen pairs.',
)
