"""A PEFT LoRA adapter folder damaged one way: its adapter_config.json edited or its safetensors file
broken, the damage the merge and squeeze fuzz tests share."""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

import test_fuzz_adapter_config as configs
from fuzz_safetensors import damage, safetensors_mutations

adapter_mutations = st.one_of(st.tuples(st.just("config"), configs.config_mutations),
                              st.tuples(st.just("safetensors"), safetensors_mutations))


def damage_adapter(adapter: Path, mutation) -> Path:
    """Apply one of :data:`adapter_mutations` to the adapter folder; returns the damaged file."""
    kind, change = mutation
    if kind == "config":
        victim = adapter / configs.CONFIG
        victim.write_bytes(configs.mutated_config(victim.read_text(), change))
    else:
        victim = adapter / "adapter_model.safetensors"
        damage(victim, change)
    return victim
