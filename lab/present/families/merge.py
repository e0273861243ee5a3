"""The merges family (merge, merge_eval): its theory, findings, headline figure and section."""

from __future__ import annotations

from lab.present.family import Family

THEORY = (
    'lab merge writes a loadable PEFT adapter from several adapters and records, per module, its relative Frobenius'
    ' error against the exact weighted sum T = Σ_j w_j·s_j·B_j·A_j: stack (exact, by concatenation), linear '
    '(index-wise average: cross terms), svd (the best rank-k approximation of T), lego (LoRA-LEGO, arXiv '
    "2409.16167: k-means over the pooled units, each centroid rescaled to its members' mean norm, the output × "
    "√(r/k); data-free) and lego-oracle (the lab's earlier variant, output scale fitted to T itself: an oracle). "
    'The floor for any merge of rank k is the Eckart–Young error √(Σ_{i>k} σ_i²)/‖T‖_F, drawn beside the methods; '
    'svd reaches it by construction, so merges are also judged by what LEGO claims, several tasks in one adapter: '
    'with --eval-texts, the held-out loss of the merge, of each input adapter and of the base on each text set '
    "(merge_eval), under the base's own fine-tuning objective."
)

FAMILY = Family(
    'merge', 'Merges', ('merge', 'merge_eval'), THEORY,
    icon=':material/merge:',
    hint='Run `lab merge ADAPTER... --method M --out DIR --results RESULTS` to add merges.',
)
