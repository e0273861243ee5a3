"""Every input the fuzz suite (or the report of issue 14) found to break the contract, replayed
exactly as a plain test. Each docstring says what used to happen; the assertion is the contract:
a complete run with finite numbers, or one LabError line naming the file (and field)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch

from fuzz_helpers import analyze_contract, check_run, cli_contract, copy_inputs, workspace
from lab.errors import FormatError, LabError

CONFIG = "adapter_config.json"


def _set_config(folder: Path, **fields) -> Path:
    path = folder / CONFIG
    config = json.loads(path.read_text())
    config.update(fields)
    path.write_text(json.dumps(config))
    return path


def _edit_header(path: Path, edit) -> None:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    edit(header)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n :])




# ---- adapter_config.json numbers --------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1e308, 1e160, -1.7976931348623157e308])
@pytest.mark.parametrize("with_base", [False, True])
def test_huge_lora_alpha(llama_lora, alpha, with_base):
    """Issue 14's report: ``"lora_alpha": 1e308`` ended in OverflowError (34, 'Numerical result out
    of range') from the spectra probe's ‖ΔW‖_F², and with the entanglement probe first in
    LinAlgError from a Gram matrix of the scaled factors. s = α/r is finite, and so is
    ‖s·B·A‖_F for these factors: the run must complete with PEFT's scale, or name the field."""
    with workspace() as work:
        inputs = copy_inputs(llama_lora, work)
        config = _set_config(inputs.ckpt, lora_alpha=alpha)
        result = analyze_contract(work, inputs, [config], with_base=with_base)
        if isinstance(result, LabError):
            assert "lora_alpha" in str(result)
        else:
            assert (result.table("deltas")["scale"] == alpha / 4).all()


def test_scale_whose_update_overflows_float64(llama_lora):
    """The largest finite α with factors ten times PEFT's: s = α/r is finite but ‖s·B·A‖_F is
    not representable in float64. Nothing finite can be reported, so the error must name the
    config's field (today the probes' Grams overflow first: LinAlgError)."""
    from safetensors.torch import load_file, save_file

    with workspace() as work:
        inputs = copy_inputs(llama_lora, work)
        config = _set_config(inputs.ckpt, lora_alpha=1.7976931348623157e308)
        weights = inputs.ckpt / "adapter_model.safetensors"
        save_file({k: v * 10 if "lora_B" in k else v for k, v in load_file(weights).items()}, weights)
        result = analyze_contract(work, inputs, [config], with_base=False)
        assert isinstance(result, LabError) and "lora_alpha" in str(result)


@pytest.mark.parametrize("alpha", [1e-300, 1e-290])
def test_tiny_lora_alpha(llama_lora, alpha):
    """``"lora_alpha": 1e-300`` (s = 2.5e-301, a normal float64) ended in ZeroDivisionError in
    the spectra probe's stable rank, ‖ΔW‖_F² / ‖ΔW‖₂² with both squares underflowing to zero."""
    with workspace() as work:
        inputs = copy_inputs(llama_lora, work)
        config = _set_config(inputs.ckpt, lora_alpha=alpha)
        result = analyze_contract(work, inputs, [config])
        if isinstance(result, LabError):
            assert "lora_alpha" in str(result)


@pytest.mark.parametrize("alpha", [5e-324, 1e-320])
def test_lora_alpha_whose_scale_underflows(llama_lora, alpha):
    """α = 5e-324 gave s = α/4 = 0.0: a silent 'unchanged' module. α/r below float64's normal
    range is now an error naming the file and the field."""
    with workspace() as work:
        inputs = copy_inputs(llama_lora, work)
        config = _set_config(inputs.ckpt, lora_alpha=alpha)
        result = analyze_contract(work, inputs, [config])
        assert isinstance(result, FormatError) and "lora_alpha" in str(result)


def test_lora_alpha_integer_beyond_float64(llama_lora):
    """``"lora_alpha": 10**400`` (valid JSON, an int) ended in OverflowError: int too large to
    convert to float, from math.isfinite in the config reader."""
    with workspace() as work:
        inputs = copy_inputs(llama_lora, work)
        config = _set_config(inputs.ckpt, lora_alpha=10**400)
        result = analyze_contract(work, inputs, [config])
        assert isinstance(result, FormatError) and "lora_alpha" in str(result)


@pytest.mark.parametrize("text", ["9" * 5000, "[" * 100_000 + "]" * 100_000])
def test_config_json_that_python_cannot_parse(llama_lora, text):
    """A 5000-digit integer (ValueError: Exceeds the limit (4300 digits)) and 100000 nested
    arrays (RecursionError) escaped the reader, which caught only JSONDecodeError."""
    with workspace() as work:
        inputs = copy_inputs(llama_lora, work)
        config = inputs.ckpt / CONFIG
        config.write_text(config.read_text().replace('"lora_alpha": 8', f'"lora_alpha": {text}'))
        assert isinstance(analyze_contract(work, inputs, [config]), FormatError)


@pytest.mark.parametrize("name", ["config.json", "trainer_state.json"])
@pytest.mark.parametrize("text", ["9" * 5000, "[" * 100_000 + "]" * 100_000])
def test_model_json_that_python_cannot_parse(llama_full, name, text):
    """The same two texts in a full model's config.json, or in the trainer_state.json of a
    training output (a checkpoint-N folder beside the final model), escaped discovery."""
    with workspace() as work:
        inputs = copy_inputs(llama_full, work)
        shutil.copytree(inputs.ckpt, inputs.ckpt / "checkpoint-1")
        target = inputs.ckpt / name
        target.write_text(f'{{"model_type": "llama", "global_step": {text}}}')
        assert isinstance(analyze_contract(work, inputs, [target]), FormatError)


@pytest.mark.parametrize("key", ["(?i)q_proj", "(?s)v_proj"])
def test_pattern_key_peft_cannot_embed(llama_lora, key):
    """An alpha_pattern key that compiles alone but not inside PEFT's ``(.*\\.)?(KEY)$`` (global
    flags not at the start) ended in re.error when the scale was looked up."""
    with workspace() as work:
        inputs = copy_inputs(llama_lora, work)
        config = _set_config(inputs.ckpt, alpha_pattern={key: 16})
        result = analyze_contract(work, inputs, [config])
        assert isinstance(result, FormatError) and "alpha_pattern" in str(result)


@pytest.mark.parametrize("field", ["use_dora", "use_rslora", "fan_in_fan_out"])
def test_flag_written_as_a_string(llama_lora, field):
    """``"use_dora": "false"`` was read as true (bool of a non-empty string); a flag must be a JSON boolean."""
    with workspace() as work:
        inputs = copy_inputs(llama_lora, work)
        config = _set_config(inputs.ckpt, **{field: "false"})
        result = analyze_contract(work, inputs, [config])
        assert isinstance(result, FormatError) and field in str(result)


# ---- safetensors headers ----------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [("shape", [float("inf"), 32]), ("shape", [-48, -32]),
                                          ("data_offsets", [0, float("inf")])])
def test_header_numbers_that_are_not_counts(llama_full, field, value):
    """``"shape": [Infinity, 32]`` (or Infinity in data_offsets) ended in OverflowError from
    int(); negative dimensions whose product fits the offsets passed the header check."""
    with workspace() as work:
        inputs = copy_inputs(llama_full, work)
        weights = inputs.ckpt / "model.safetensors"
        _edit_header(weights, lambda h: h["model.layers.0.mlp.up_proj.weight"].__setitem__(field, value))
        assert isinstance(analyze_contract(work, inputs, [weights]), FormatError)


def test_tensor_name_with_a_newline(llama_lora):
    """A key renamed to ``...self_attn\\n.q_proj...`` was analysed as a module whose name split
    every row and message that quotes it over two lines."""
    with workspace() as work:
        inputs = copy_inputs(llama_lora, work)
        weights = inputs.ckpt / "adapter_model.safetensors"

        def rename(header):
            for part in ("lora_A", "lora_B"):
                key = f"base_model.model.model.layers.0.self_attn.q_proj.{part}.weight"
                header[key.replace("self_attn", "self_attn\n")] = header.pop(key)

        _edit_header(weights, rename)
        assert isinstance(analyze_contract(work, inputs, [weights], with_base=False), FormatError)


# ---- folders and sharded indexes --------------------------------------------------------------


def test_folder_named_like_a_weight_file(llama_full):
    """A folder ``extra.safetensors`` in a folder without weights ended in IsADirectoryError."""
    with workspace() as work:
        inputs = copy_inputs(llama_full, work)
        (inputs.ckpt / "model.safetensors").unlink()
        (inputs.ckpt / "extra.safetensors").mkdir()
        assert isinstance(analyze_contract(work, inputs, [inputs.ckpt]), LabError)


@pytest.mark.parametrize("shard", ["../outside.safetensors", "a\x00b.safetensors", "config.json"])
def test_index_naming_a_shard_outside_the_folder(llama_sharded, shard):
    """An index entry ``../outside.safetensors`` was read from outside the checkpoint (and hashed
    into the manifest as part of it); a NUL in a shard name reached the message unescaped; a
    shard ``config.json`` was unpickled and reported as "config.json: this pickle needs code",
    without naming the index that pointed there."""
    with workspace() as work:
        inputs = copy_inputs(llama_sharded, work)
        first = sorted(inputs.ckpt.glob("model-*.safetensors"))[0]
        (work / "outside.safetensors").write_bytes(first.read_bytes())
        index = inputs.ckpt / "model.safetensors.index.json"
        data = json.loads(index.read_text())
        data["weight_map"] = {k: (shard if v == first.name else v) for k, v in data["weight_map"].items()}
        index.write_text(json.dumps(data))
        result = analyze_contract(work, inputs, [index])
        assert isinstance(result, FormatError) and "\x00" not in str(result)


# ---- pickles ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["sparse", "meta", "quantized"])
def test_pickle_holding_a_tensor_without_dense_values(llama_bin, variant):
    """``pytorch_model.bin`` with one weight saved sparse (found by the fuzz suite: ('variant', 0,
    'sparse', 'zip')) ended in TypeError: can't convert Sparse layout tensor to numpy; meta and
    quantized tensors load under weights_only too."""
    with workspace() as work:
        inputs = copy_inputs(llama_bin, work)
        weights = inputs.ckpt / "pytorch_model.bin"
        state = torch.load(weights, weights_only=True)
        key = "model.layers.0.mlp.up_proj.weight"
        t = state[key]
        state[key] = {"sparse": lambda: t.to_sparse(), "meta": lambda: torch.empty(t.shape, device="meta"),
                      "quantized": lambda: torch.quantize_per_tensor(t, 0.1, 0, torch.qint8)}[variant]()
        torch.save(state, weights)
        result = analyze_contract(work, inputs, [weights])
        assert isinstance(result, FormatError) and key in str(result)


def test_pickle_holding_a_parameter(llama_bin):
    """A weight saved as ``nn.Parameter`` (found by the fuzz suite: ('variant', 0, 'parameter',
    'zip')) loads requiring grad, and reading it ended in RuntimeError: Can't call numpy() on
    Tensor that requires grad. It is an ordinary weight: the run completes."""
    with workspace() as work:
        inputs = copy_inputs(llama_bin, work)
        weights = inputs.ckpt / "pytorch_model.bin"
        state = torch.load(weights, weights_only=True)
        key = sorted(state)[0]
        state[key] = torch.nn.Parameter(state[key].clone())
        torch.save(state, weights)
        check_run(analyze_contract(work, inputs, [weights]))


def test_full_checkpoint_with_huge_float64_weights(llama_bin):
    """One float64 weight scaled by 1e300 (found by the fuzz suite: ('variant', 0, 'f64_huge',
    'zip')): finite input, and the entanglement probe's Gram of ψ overflowed into LinAlgError
    (Eigenvalues did not converge). The Schmidt coefficients do not depend on ‖ΔW‖, so the run
    must complete with finite numbers (or say which file and tensor it cannot represent)."""
    with workspace() as work:
        inputs = copy_inputs(llama_bin, work)
        weights = inputs.ckpt / "pytorch_model.bin"
        state = torch.load(weights, weights_only=True)
        key = sorted(state)[0]
        state[key] = state[key].double() * 1e300
        torch.save(state, weights)
        analyze_contract(work, inputs, [weights])


def test_full_checkpoint_with_tiny_float64_weights(llama_bin):
    """``lm_head.weight`` scaled by 1e-300 (found by the fuzz suite through the CLI: ('pickle',
    ('variant', 0, 'f64_tiny', 'zip'))): ΔW ≈ −W is finite, but W + ΔW's Gram underflowed to zero
    and the spectra row's intruder_min_cos came out NaN for that module alone."""
    with workspace() as work:
        inputs = copy_inputs(llama_bin, work)
        weights = inputs.ckpt / "pytorch_model.bin"
        state = torch.load(weights, weights_only=True)
        state["lm_head.weight"] = state["lm_head.weight"].double() * 1e-300
        torch.save(state, weights)
        analyze_contract(work, inputs, [weights])


def test_cli_quantized_pickle_prints_one_line(llama_bin):
    """``lab analyze`` on a pickle holding a quantized tensor (found by the fuzz suite: ('pickle',
    ('variant', 0, 'quantized', 'zip'))) printed torch's "TypedStorage is deprecated" warning
    before its error: two stderr lines instead of one."""
    with workspace() as work:
        inputs = copy_inputs(llama_bin, work)
        weights = inputs.ckpt / "pytorch_model.bin"
        state = torch.load(weights, weights_only=True)
        key = sorted(state)[0]
        state[key] = torch.quantize_per_tensor(state[key].float(), 0.1, 0, torch.qint8)
        torch.save(state, weights)
        assert cli_contract(work, inputs, [weights]) == 2


def test_key_whose_block_index_is_damaged_names_its_file(llama_full):
    """One flipped bit turns 'model.layers.0.mlp.down_proj.weight' into 'model.layers/0.mlp...'
    (found by the fuzz suite: ('flip', 312, 1)); its suffix 'mlp.down_proj.weight' fits both
    layers of the base, and the MatchError named only the base file, not the fine-tune's."""
    with workspace() as work:
        inputs = copy_inputs(llama_full, work)
        weights = inputs.ckpt / "model.safetensors"
        key = "model.layers.0.mlp.down_proj.weight"
        _edit_header(weights, lambda h: h.__setitem__(key.replace("layers.0", "layers/0"), h.pop(key)))
        assert isinstance(analyze_contract(work, inputs, [weights]), LabError)


@pytest.mark.parametrize("which", ["ckpt", "base"])
def test_safetensors_with_an_empty_header(llama_full, which):
    """A model.safetensors whose header lists no tensors (found by the fuzz suite: ('header', {}))
    gave "llama_full: shares no 2-D weight with the base", naming the folders but not the empty file."""
    with workspace() as work:
        inputs = copy_inputs(llama_full, work, base=True)
        weights = (inputs.ckpt if which == "ckpt" else inputs.base) / "model.safetensors"
        _edit_header(weights, lambda h: h.clear())
        assert isinstance(analyze_contract(work, inputs, [weights]), FormatError)


def test_full_checkpoint_whose_keys_match_nothing_names_its_file(llama_bin):
    """A ``pytorch_model.bin`` whose keys are integers (found by the fuzz suite: ('odd',
    'int_keys', 'zip')) gave "llama_bin: shares no 2-D weight with the base", naming the folder
    but not the weight file whose keys are wrong."""
    with workspace() as work:
        inputs = copy_inputs(llama_bin, work)
        weights = inputs.ckpt / "pytorch_model.bin"
        state = torch.load(weights, weights_only=True)
        torch.save({i: v for i, v in enumerate(state.values())}, weights)
        assert isinstance(analyze_contract(work, inputs, [weights]), LabError)


def test_pristine_inputs_complete(llama_lora, llama_sharded_bin):
    """Undamaged inputs give complete, finite runs: the contract checks pass on good input, so the
    failures above are the damage's doing."""
    for inputs in (llama_lora, llama_sharded_bin):
        with workspace() as work:
            run = analyze_contract(work, copy_inputs(inputs, work), [inputs.ckpt])
            check_run(run)
