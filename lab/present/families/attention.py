"""The external entanglement (attention) family (attention_summary, attention_token_fits, attention_token_cuts, attention_entanglement, windows): its theory, findings, headline figure and section."""

from __future__ import annotations

from lab.present.family import Family

THEORY = (
    'The base and each checkpoint run with eager attention on the same token windows of exactly L tokens. For each '
    "head's L×L attention matrix P and each cut after ℓ tokens, the cross block P[ℓ:, :ℓ] (queries after the cut "
    'reading keys before it; for encoders also P[:ℓ, ℓ:]) gets the entropy S(ℓ) of its normalised squared singular '
    "values: the 'token–token correlations' that arXiv 2601.06788 reports to follow 'an area law with logarithmic "
    "corrections' (its 'Attention Cardy Formula'). Over ℓ in tokens three laws are fitted to the windows' mean "
    "profile: Cardy's chord S = a + (c/3)·ln((L/π)·sin(πℓ/L)), a volume law S = a + b·min(ℓ, L−ℓ) and a constant; a"
    " law is the verdict only with an AIC lower by more than 2 and R² ≥ 0.8, else 'neither fits'. The digit-chain "
    'profile (the internal probe applied to P: cuts split index digits, not tokens) is kept beside it, unfitted. '
    "The 'no-hair' claim (LoRA and full fine-tuning differ inside ΔW, not in the attention) is one comparison: how "
    "far the tuned attention moved from the base's (total variation of rows, relative entropy difference) beside "
    "how far the layer's W_q and W_v moved (‖ΔW‖_F/‖W‖_F)."
)

FAMILY = Family(
    'attention', 'External entanglement (attention)', ('attention_summary', 'attention_token_fits', 'attention_token_cuts', 'attention_entanglement', 'windows'), THEORY,
    icon=':material/visibility:',
    hint='Run `lab analyze ... --base BASE --probes attention` to add it (needs a tokenizer).',
)
