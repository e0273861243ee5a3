"""The updates read family (deltas): its theory, findings, headline figure and section."""

from __future__ import annotations

from lab.present.family import Family

THEORY = (
    "Each module's update ΔW = W_ft − W_base, or s·B·A for an adapter with PEFT's exact scale s (lora_alpha/r, "
    'lora_alpha/√r with rsLoRA, per-module rank_pattern/alpha_pattern). The Frobenius norm of an adapter is '
    'computed from the r×r Gram matrices, ‖sBA‖_F² = s²·tr((BᵀB)(AAᵀ)), without forming ΔW.'
)

FAMILY = Family(
    'deltas', 'Updates read', ('deltas',), THEORY,
    icon=':material/folder_open:',
    hint='Run `lab analyze CHECKPOINT` to add it.', on_runs_page=True,
)
