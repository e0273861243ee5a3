"""The forgetting: what fine-tuning cost the model family (forgetting, forgetting_layers, windows): its theory, findings, headline figure and section."""

from __future__ import annotations

from lab.present.family import Family

THEORY = (
    "The base and each checkpoint run on the same token windows of two text sets: the run's --texts (normally the "
    'fine-tuning data) and --reference-texts (text it was not tuned on, where a change is what was forgotten). Per '
    'window, KL(p_base ‖ p_tuned) = Σ_v p_base(v)·ln(p_base(v)/p_tuned(v)) in nats of the next-token distributions '
    '(decoders, positions 0 … L−2) or of the masked-token ones (encoders with a masked-LM head, a seeded fraction '
    'of positions masked, the same for every model); the cross-entropy of the base and of the tuned model at the '
    'same positions (loss change = tuned − base); and per hidden state the cosine distance 1 − cos(h_base, '
    'h_tuned). Means over windows with bootstrap 95 % intervals; which text set moved more is stated only where the'
    " intervals separate. Biderman et al., 'LoRA Learns Less and Forgets Less' (TMLR 2024), find that 'LoRA better "
    "maintains the base model's performance on tasks outside the target domain' and note that 'it is trivial that "
    "models that change less when finetuned to a new target domain, will forget less of the source domain': the "
    "findings therefore put each run's KL on the reference texts beside the size of its update (‖ΔW‖_F) and its "
    "intruder count, rather than beside the method's name."
)

FAMILY = Family(
    'forgetting', 'Forgetting: what fine-tuning cost the model', ('forgetting', 'forgetting_layers', 'windows'), THEORY,
    icon=':material/history:',
    hint='Run `lab analyze CKPT --base BASE --probes forgetting --texts TUNING.txt --reference-texts OTHER.txt` to add it.',
)
