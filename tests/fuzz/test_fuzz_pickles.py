"""Damaged and hostile PyTorch pickles (``pytorch_model.bin``, ``adapter_model.bin``, the base
replaced by a pickle) meet the contract through ``lab.analyze``, and no pickle ever runs code.

Hostile pickles carry a payload whose unpickling would create a marker file (``open``,
``os.mkdir``, ``exec``, ``eval``, ``os.system``), inside torch's zip format, its legacy format
or a bare pickle, at the top level or nested in the state dict; the marker must never appear.
Damaged ones are truncated or byte-flipped, hold odd objects instead of a state dict, or hold
tensors that are sparse, meta, quantized, complex, integer, 0-d, 3-D, huge or NaN.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
from pathlib import Path

import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file

from fuzz_helpers import Inputs, analyze_contract, budget, copy_inputs, workspace
from lab.errors import FormatError

MARKER = "PWNED"
PAYLOADS = ("open", "mkdir", "exec", "eval", "system")
CONTAINERS = ("zip", "legacy", "bare")
PLACES = ("top", "entry", "nested", "tensor")


class Payload:
    """Unpickling this object would create ``marker``: what a malicious checkpoint does."""

    def __init__(self, kind: str, marker: Path) -> None:
        self.kind, self.marker = kind, str(marker)

    def __reduce__(self):
        m = self.marker
        return {
            "open": (builtins.open, (m, "w")),
            "mkdir": (os.mkdir, (m,)),
            "exec": (builtins.exec, (f"open({m!r}, 'w').close()",)),
            "eval": (builtins.eval, (f"__import__('pathlib').Path({m!r}).touch()",)),
            "system": (os.system, (f"touch {m}",)),
        }[self.kind]


def _serialise(obj: object, container: str, protocol: int) -> bytes:
    buffer = io.BytesIO()
    if container == "bare":
        pickle.dump(obj, buffer, protocol=protocol)
    else:
        torch.save(obj, buffer, pickle_protocol=min(protocol, 5), _use_new_zipfile_serialization=container == "zip")
    return buffer.getvalue()


def hostile(state: dict, payload: str, container: str, place: str, protocol: int, marker: Path) -> bytes:
    """``state`` with a payload placed in it, serialised as ``container``."""
    evil = Payload(payload, marker)
    key = sorted(state)[0]
    obj = {
        "top": evil,
        "entry": {**state, "extra": evil},
        "nested": {"state_dict": {**state, "extra": [{"deep": evil}]}},
        "tensor": {**state, key: evil},
    }[place]
    return _serialise(obj, container, protocol)


def _with_nan(t: torch.Tensor) -> torch.Tensor:
    out = t.clone()
    out.view(-1)[0] = float("nan")
    return out


def _variant(t: torch.Tensor, kind: str) -> object:
    """One tensor replaced by something a state dict should not hold (or an unusual but valid one)."""
    t = t.detach()
    return {
        "sparse": lambda: t.to_sparse(),
        "meta": lambda: torch.empty(t.shape, device="meta"),
        "quantized": lambda: torch.quantize_per_tensor(t.float(), 0.1, 0, torch.qint8),
        "complex": lambda: t.to(torch.complex64),
        "int": lambda: (t * 100).to(torch.int32),
        "bool": lambda: t > 0,
        "half": lambda: t.half(),
        "bf16": lambda: t.bfloat16(),
        "fp8": lambda: t.to(torch.float8_e4m3fn),
        "f64_huge": lambda: t.double() * 1e300,
        "f64_tiny": lambda: t.double() * 1e-300,
        "nan": lambda: _with_nan(t),
        "transposed": lambda: t.t() if t.dim() == 2 else t,
        "strided_view": lambda: t.t().contiguous().t() if t.dim() == 2 else t,
        "scalar": lambda: torch.tensor(1.5),
        "3d": lambda: t.unsqueeze(0),
        "empty": lambda: t[:0],
        "parameter": lambda: torch.nn.Parameter(t.clone()),
        "dict": lambda: {"inner": t},
        "none": lambda: None,
    }[kind]()


VARIANTS = ("sparse", "meta", "quantized", "complex", "int", "bool", "half", "bf16", "fp8", "f64_huge", "f64_tiny",
            "nan", "transposed", "strided_view", "scalar", "3d", "empty", "parameter", "dict", "none")
ODD_OBJECTS = ("list", "tensor", "int", "str", "none", "int_keys", "wrapped", "wrapped_two", "empty", "nested_one")

hostile_mutations = st.tuples(st.just("hostile"), st.sampled_from(PAYLOADS), st.sampled_from(CONTAINERS),
                              st.sampled_from(PLACES), st.integers(0, 5))
damage_mutations = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 2**32)),
    st.tuples(st.just("flip"), st.integers(0, 2**32), st.integers(1, 255)),
    st.tuples(st.just("variant"), st.integers(0, 10_000), st.sampled_from(VARIANTS), st.sampled_from(["zip", "legacy"])),
    st.tuples(st.just("odd"), st.sampled_from(ODD_OBJECTS), st.sampled_from(["zip", "legacy"])),
)


def _odd(state: dict, kind: str) -> object:
    first = next(iter(state.values()))
    return {
        "list": lambda: list(state.values()),
        "tensor": lambda: first,
        "int": lambda: 7,
        "str": lambda: "weights",
        "none": lambda: None,
        "int_keys": lambda: {i: v for i, v in enumerate(state.values())},
        "wrapped": lambda: {"state_dict": state},
        "wrapped_two": lambda: {"state_dict": state, "step": 3},
        "empty": lambda: {},
        "nested_one": lambda: {"model": {"module": state}},
    }[kind]()


def mutate(path: Path, mutation: tuple, marker: Path) -> None:
    """Rewrite the pickle at ``path`` with ``mutation`` applied."""
    data = path.read_bytes()
    kind = mutation[0]
    if kind == "truncate":
        path.write_bytes(data[: mutation[1] % len(data)])
        return
    if kind == "flip":
        out = bytearray(data)
        out[mutation[1] % len(out)] ^= mutation[2]
        path.write_bytes(bytes(out))
        return
    state = torch.load(path, weights_only=True)
    if kind == "hostile":
        path.write_bytes(hostile(state, *mutation[1:], marker=marker))
    elif kind == "variant":
        keys = sorted(state)
        key = keys[mutation[1] % len(keys)]
        path.write_bytes(_serialise({**state, key: _variant(state[key], mutation[2])}, mutation[3], 2))
    else:
        path.write_bytes(_serialise(_odd(state, mutation[1]), mutation[2], 2))


TARGETS = ("full", "adapter", "base", "shard")


def _target(target: str, llama_bin, llama_lora_bin, llama_sharded_bin, work: Path):
    """The inputs copied into ``work`` and the pickle to damage."""
    if target == "full":
        inputs = copy_inputs(llama_bin, work)
        return inputs, inputs.ckpt / "pytorch_model.bin"
    if target == "adapter":
        inputs = copy_inputs(llama_lora_bin, work)
        return inputs, inputs.ckpt / "adapter_model.bin"
    if target == "shard":
        inputs = copy_inputs(llama_sharded_bin, work)
        return inputs, sorted(inputs.ckpt.glob("pytorch_model-*.bin"))[1]
    # the base given as a pickle: the base's tensors saved with torch.save, in a folder of its own
    inputs = copy_inputs(llama_bin, work)
    base = work / "base_bin"
    base.mkdir()
    torch.save(load_file(inputs.base / "model.safetensors"), base / "pytorch_model.bin")
    (base / "config.json").write_bytes((inputs.base / "config.json").read_bytes())
    return Inputs(inputs.ckpt, base), base / "pytorch_model.bin"


@budget(0.6)
@given(target=st.sampled_from(TARGETS), mutation=hostile_mutations)
def test_hostile_pickle_never_runs(llama_bin, llama_lora_bin, llama_sharded_bin, target, mutation):
    """A pickle whose loading would create a marker file: FormatError naming the file, and no marker, ever."""
    with workspace() as work:
        inputs, victim = _target(target, llama_bin, llama_lora_bin, llama_sharded_bin, work)
        marker = work / MARKER
        mutate(victim, mutation, marker)
        assert not marker.exists()  # serialising the payload ran nothing either
        result = analyze_contract(work, inputs, [victim])
        assert not marker.exists(), f"the pickle ran code: {mutation}"
        assert isinstance(result, FormatError), f"a pickle that needs code was read: {mutation}"


@budget(0.7)
@given(target=st.sampled_from(TARGETS), mutation=damage_mutations, with_base=st.booleans())
def test_damaged_pickle(llama_bin, llama_lora_bin, llama_sharded_bin, target, mutation, with_base):
    """A truncated, flipped or oddly-filled pickle: a finite run, or one line naming the file."""
    with workspace() as work:
        inputs, victim = _target(target, llama_bin, llama_lora_bin, llama_sharded_bin, work)
        marker = work / MARKER
        mutate(victim, mutation, marker)
        analyze_contract(work, inputs, [victim], with_base=with_base or target in ("full", "base", "shard"))
        assert not marker.exists()
