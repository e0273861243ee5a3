"""Damaged sharded checkpoints (``model.safetensors.index.json`` and
``pytorch_model.bin.index.json`` with their shards) meet the contract through ``lab.analyze``:
weight_map entries pointing at missing shards, outside the folder, at non-weight files or at the
wrong shard, dropped and invented keys, garbled JSON, deleted or swapped shards, damaged shards."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from fuzz_helpers import analyze_contract, budget, copy_inputs, dumps, json_values, workspace
from fuzz_safetensors import damage, safetensors_mutations

INDEXES = {"safetensors": "model.safetensors.index.json", "bin": "pytorch_model.bin.index.json"}
OUTSIDE = "outside.safetensors"  # a valid weight file next to (not inside) the checkpoint folder

keys = st.integers(min_value=0, max_value=10_000)
# Where a weight_map entry may point: other shards ("@N"), files that are not shards, paths that
# leave the folder (relative, absolute, to a real weight file outside), names that cannot be paths.
special_names = st.sampled_from(["@0", "@1", "@2", "missing.safetensors", "missing.bin", "config.json", "generation_config.json",
                     "model.safetensors.index.json", "pytorch_model.bin.index.json", "", ".", "..", "/", "/etc/passwd",
                     f"../{OUTSIDE}", "/dev/null", "/dev/zero", "sub/../@0", "a\x00b.safetensors", "nl\n.safetensors",
                     "x" * 300, "./@0"])
shard_names = st.one_of(special_names, special_names, special_names, st.text(max_size=16), json_values)
ops = st.one_of(
    st.tuples(st.just("map_value"), keys, shard_names),
    st.tuples(st.just("map_drop"), keys),
    st.tuples(st.just("map_add"), st.text(max_size=24) | st.sampled_from(["model.layers.0.self_attn.q_proj.weight",
                                                                            "lm_head.weight", "x.weight"]), shard_names),
    st.tuples(st.just("map_rename"), keys, st.text(max_size=24)),
    st.tuples(st.just("weight_map"), json_values),
    st.tuples(st.just("metadata"), json_values),
    st.tuples(st.just("delete_shard"), keys),
    st.tuples(st.just("swap_shards"), keys, keys),
    st.tuples(st.just("shard_damage"), keys, safetensors_mutations),
)
whole = st.one_of(
    st.tuples(st.just("replace"), json_values),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("bytes"), st.binary(max_size=48)),
)
mutations = st.one_of(st.lists(ops, min_size=1, max_size=3).map(lambda o: ("edits", tuple(o))), whole)


def _shards(index: dict) -> list[str]:
    return sorted(set(v for v in index["weight_map"].values()))


def _name(value: object, shards: list[str]) -> object:
    """A shard name with "@N" standing for the N-th real shard."""
    if isinstance(value, str):
        for i in range(3):
            value = value.replace(f"@{i}", shards[i % len(shards)])
    return value


def mutate(folder: Path, index_name: str, mutation: tuple) -> list[Path]:
    """Apply ``mutation`` to the sharded checkpoint in ``folder``; returns the files it touched."""
    index_path = folder / index_name
    text = index_path.read_text()
    kind = mutation[0]
    if kind == "replace":
        index_path.write_text(dumps(mutation[1]))
        return [index_path]
    if kind == "truncate":
        index_path.write_text(text[: mutation[1] % (len(text) + 1)])
        return [index_path]
    if kind == "bytes":
        index_path.write_bytes(mutation[1])
        return [index_path]
    index = json.loads(text)
    shards = _shards(index)
    touched = [index_path]
    for op in mutation[1]:
        weight_map = index.get("weight_map")
        names = sorted(weight_map) if isinstance(weight_map, dict) and weight_map else None
        if op[0] == "map_value" and names:
            weight_map[names[op[1] % len(names)]] = _name(op[2], shards)
        elif op[0] == "map_drop" and names:
            del weight_map[names[op[1] % len(names)]]
        elif op[0] == "map_add" and isinstance(weight_map, dict):
            weight_map[op[1]] = _name(op[2], shards)
        elif op[0] == "map_rename" and names:
            weight_map[op[2]] = weight_map.pop(names[op[1] % len(names)])
        elif op[0] == "weight_map":
            index["weight_map"] = op[1]
        elif op[0] == "metadata":
            index["metadata"] = op[1]
        elif op[0] == "delete_shard":
            (folder / shards[op[1] % len(shards)]).unlink(missing_ok=True)
        elif op[0] == "swap_shards":
            a, b = folder / shards[op[1] % len(shards)], folder / shards[op[2] % len(shards)]
            if a != b and a.exists() and b.exists():
                tmp = folder / "swap.tmp"
                a.rename(tmp), b.rename(a), tmp.rename(b)
                touched += [a, b]
        elif op[0] == "shard_damage":
            shard = folder / shards[op[1] % len(shards)]
            if shard.suffix == ".safetensors" and shard.exists():
                damage(shard, op[2])
                touched.append(shard)
    index_path.write_text(dumps(index))
    return touched


@budget(1.0)
@given(kind=st.sampled_from(["safetensors", "safetensors", "bin"]), mutation=mutations)
def test_damaged_sharded_checkpoint(llama_sharded, llama_sharded_bin, kind, mutation):
    """A sharded fine-tune's index (or shards) damaged: a finite run, or one line naming the index or a damaged shard."""
    pristine = llama_sharded if kind == "safetensors" else llama_sharded_bin
    with workspace() as work:
        inputs = copy_inputs(pristine, work)
        outside = next(inputs.ckpt.glob("*.safetensors"), None) or next(inputs.ckpt.glob("*.bin"))
        (work / OUTSIDE).write_bytes(outside.read_bytes())
        touched = mutate(inputs.ckpt, INDEXES[kind], mutation)
        analyze_contract(work, inputs, touched)
