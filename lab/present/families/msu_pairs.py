"""The several adapters: stacking vs averaging family (msu_pairs): its theory, findings, headline figure and section."""

from __future__ import annotations

from lab.present.family import Family

THEORY = (
    'For several adapters of one base, per module: concatenating their units, [B_1 … B_J]·[s_1A_1; …; s_JA_J], '
    "equals summing their updates exactly (any ranks and scales; FLoRA's stacking), while index-wise averaging of "
    "the factors (PEFT's 'linear', FedAvg) adds cross terms B_j·A_k (FLoRA's aggregation noise). Its relative error"
    ' against the exact mean depends on the arbitrary order of ranks: its spread over seeded rank permutations '
    'shows by how much.'
)

FAMILY = Family(
    'msu_pairs', 'Several adapters: stacking vs averaging', ('msu_pairs',), THEORY,
    icon=':material/join:',
    hint='Run `lab analyze ADAPTER_1 ADAPTER_2 ... --probes msu_pairs` to add it.',
)
