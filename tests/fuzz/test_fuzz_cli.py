"""The same damage through the ``lab analyze`` command in a subprocess: exit 0 with a complete
run, or exit 2 with exactly one stderr line naming the file and no traceback; a hostile pickle
never runs. Fewer examples than the in-process tests: each one starts a Python process."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import test_fuzz_adapter_config as configs
import test_fuzz_pickles as pickles
from fuzz_helpers import budget, cli_contract, copy_inputs, workspace
from fuzz_safetensors import damage, safetensors_mutations

mutations = st.one_of(
    st.tuples(st.just("config"), configs.config_mutations),
    st.tuples(st.just("safetensors"), safetensors_mutations),
    st.tuples(st.just("pickle"), pickles.hostile_mutations | pickles.damage_mutations),
)


@budget(0.1)
@given(mutation=mutations, with_base=st.booleans())
def test_cli_on_damaged_inputs(llama_lora, llama_full, llama_bin, mutation, with_base):
    """``lab analyze`` on a damaged adapter config, safetensors file or pickle: exit 0, or exit 2 with one line."""
    kind, change = mutation
    with workspace() as work:
        if kind == "config":
            inputs = copy_inputs(llama_lora, work)
            victim = inputs.ckpt / configs.CONFIG
            victim.write_bytes(configs.mutated_config(victim.read_text(), change))
        elif kind == "safetensors":
            inputs = copy_inputs(llama_full, work)
            victim = inputs.ckpt / "model.safetensors"
            damage(victim, change)
            with_base = True
        else:
            inputs = copy_inputs(llama_bin, work)
            victim = inputs.ckpt / "pytorch_model.bin"
            pickles.mutate(victim, change, work / pickles.MARKER)
            with_base = True
        cli_contract(work, inputs, [victim], with_base=with_base)
        assert not (work / pickles.MARKER).exists()
