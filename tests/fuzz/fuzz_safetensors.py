"""Mutations of safetensors files: header edits (entries, keys, metadata, length), consistent
reinterpretations of the same bytes, truncation and byte flips. Each mutation is a plain tuple,
so a failing example can be copied into a regression test as it is printed."""

from __future__ import annotations

import copy
import json
import math
import struct
from pathlib import Path

from hypothesis import strategies as st

from fuzz_helpers import json_values, numbers

DTYPES = ("BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "I64", "U64", "F64")
ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
            "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}

keys = st.integers(min_value=0, max_value=10_000)  # an index into the sorted tensor keys, taken modulo
dims = st.integers(min_value=-2, max_value=70) | st.sampled_from([0, 1, 2**31, 2**32, 2**63, 2**64, 10**20, -(2**63)])
entry_values = {
    "dtype": st.sampled_from(DTYPES + ("F32 ", "f32", "", "C64", "F4", "STR")) | json_values,
    "shape": st.lists(dims, max_size=4) | json_values,
    "data_offsets": st.lists(st.integers(-10, 10**6) | numbers, min_size=0, max_size=3) | json_values,
}
# Renames that keep the key plausible (another part, layer, prefix or adapter name) or not at all.
RENAMES = (
    ("lora_A", "lora_B"), ("lora_B", "lora_A"), ("lora_A", "lora_embedding_A"), ("layers.0", "layers.7"),
    ("layers.1", "layers.0"), ("base_model.model.", ""), (".weight", ".default.weight"), (".weight", ""),
    ("q_proj", "k_proj"), ("self_attn", "self_attn\n"), ("model.", "model..") , ("mlp", "MLP"),
)

ops = st.one_of(
    st.sampled_from(["dtype", "shape", "data_offsets"]).flatmap(
        lambda f: st.tuples(st.just("entry"), keys, st.just(f), entry_values[f])),
    st.tuples(st.just("entry"), keys, st.text(max_size=8), json_values),
    st.tuples(st.just("reinterpret"), keys, st.sampled_from(DTYPES)),
    st.tuples(st.just("reshape"), keys, st.sampled_from(["flat", "transpose", "row", "column", "3d"])),
    st.tuples(st.just("drop"), keys),
    st.tuples(st.just("rename"), keys, st.sampled_from(RENAMES) | st.tuples(st.just(""), st.text(max_size=12))),
    st.tuples(st.just("duplicate"), keys, st.sampled_from(RENAMES)),
    st.tuples(st.just("replace_entry"), keys, json_values),
    st.tuples(st.just("metadata"), json_values),
    st.tuples(st.just("pad"), st.integers(1, 64)),
)
whole = st.one_of(
    st.tuples(st.just("header"), json_values),
    st.tuples(st.just("length"), st.integers(0, 2**64 - 1) | st.integers(-64, 64)),
    st.tuples(st.just("truncate"), st.integers(0, 2**32)),
    st.tuples(st.just("flip"), st.integers(0, 2**32), st.integers(1, 255)),
    st.tuples(st.just("flip_header"), st.integers(0, 2**32), st.integers(1, 255)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=32)),
)
safetensors_mutations = st.one_of(st.lists(ops, min_size=1, max_size=3).map(lambda o: ("edits", tuple(o))), whole)


def split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: object, buffer: bytes, pad: int = 0) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode() + b" " * pad
    return struct.pack("<Q", len(text)) + text + buffer


def _key(header: dict, i: int) -> str:
    names = sorted(k for k in header if k != "__metadata__")
    return names[i % len(names)]


def _rename(key: str, rename: tuple[str, str]) -> str:
    old, new = rename
    return new if old == "" else key.replace(old, new)


def _intact(entry: object) -> bool:
    """Whether an entry still has the structure the consistent edits (reinterpret, reshape) rewrite."""
    def ints(v):
        return isinstance(v, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in v)

    return (isinstance(entry, dict) and entry.get("dtype") in ITEMSIZE and ints(entry.get("shape"))
            and ints(entry.get("data_offsets")) and len(entry["data_offsets"]) == 2)


def _edit(header: dict, op: tuple) -> int:
    """Apply one header edit in place; returns spaces to pad the header with. An edit that needs an
    entry's structure is skipped once an earlier edit of the same example has destroyed it."""
    kind = op[0]
    if kind == "metadata":
        header["__metadata__"] = op[1]
        return 0
    if kind == "pad":
        return op[1]
    key = _key(header, op[1])
    entry = header[key]
    if kind == "entry":
        if isinstance(entry, dict):
            entry[op[2]] = op[3]
    elif kind == "replace_entry":
        header[key] = op[2]
    elif kind == "drop":
        del header[key]
    elif kind == "rename":
        header[_rename(key, op[2])] = header.pop(key)
    elif kind == "duplicate":
        header.setdefault(_rename(key, op[2]), copy.deepcopy(entry))
    elif not _intact(entry):
        return 0
    elif kind == "reinterpret":  # the same bytes as another dtype: a consistent header, garbage values
        begin, end = entry["data_offsets"]
        count, rest = divmod(end - begin, ITEMSIZE[op[2]])
        if not rest:
            shape = entry["shape"]
            lead = math.prod(shape[:-1]) if len(shape) > 1 else 1
            entry["dtype"], entry["shape"] = op[2], (shape[:-1] + [count // lead] if count % lead == 0 and len(shape) > 1 else [count])
    elif kind == "reshape":  # the same numbers in another shape
        shape = entry["shape"]
        n = math.prod(shape)
        entry["shape"] = {"flat": [n], "transpose": shape[::-1], "row": [1, n], "column": [n, 1],
                          "3d": [1, *shape]}[op[2]]
    return 0


def mutate(data: bytes, mutation: tuple) -> bytes:
    """The bytes of a safetensors file after ``mutation`` (see the strategies above)."""
    kind = mutation[0]
    if kind == "truncate":
        return data[: mutation[1] % len(data)]
    if kind in ("flip", "flip_header"):
        (n,) = struct.unpack("<Q", data[:8])
        span = len(data) if kind == "flip" else 8 + n
        out = bytearray(data)
        out[mutation[1] % span] ^= mutation[2]
        return bytes(out)
    if kind == "append":
        return data + mutation[1]
    if kind == "length":
        (n,) = struct.unpack("<Q", data[:8])
        value = mutation[1] if mutation[1] > 64 or mutation[1] < -64 else n + mutation[1]  # small: near the truth
        return struct.pack("<Q", value % 2**64) + data[8:]
    header, buffer = split(data)
    if kind == "header":
        return join(mutation[1], buffer)
    pad = 0
    for op in mutation[1]:
        pad += _edit(header, op) if header and any(k != "__metadata__" for k in header) else 0
    return join(header, buffer, pad)



def damage(path: Path, mutation: tuple) -> None:
    """Rewrite the safetensors file at ``path`` with ``mutation`` applied."""
    path.write_bytes(mutate(path.read_bytes(), mutation))
