"""The lab command: help for every option, user errors as one stderr line with exit code 2, every
``lab analyze`` option changing the stored tables as documented (numbers checked against numpy on
the checkpoint files), ``lab probes``, ``lab tables``, ``lab version`` and the printed summary."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import builders
from lab.store import open_run

LAB = [sys.executable, "-m", "lab.cli"]


def lab(*args, cwd=None):
    return subprocess.run([*LAB, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)


def assert_user_error(result, *needles):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    base = builders.save(builders.tiny_llama(seed=0), root / "base")
    ft = builders.save(builders.perturb(builders.tiny_llama(seed=0), seed=3), root / "ft")
    return base, ft


def test_help_explains_every_option():
    out = lab("analyze", "--help").stdout
    for option in ("--base", "--out", "--run", "--probes", "--modules", "--controls", "--targets",
                   "--allow-nonfinite", "--overwrite"):
        assert option in out
    assert "analyze" in lab("--help").stdout


def test_analyze_writes_run_and_prints_where(tmp_path, models):
    base, ft = models
    result = lab("analyze", ft, "--base", base, "--out", tmp_path / "res", "--run", "demo")
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "res" / "demo") in result.stdout.replace("\n", "")
    assert (tmp_path / "res" / "demo" / "deltas.parquet").is_file()
    again = lab("analyze", ft, "--base", base, "--out", tmp_path / "res", "--run", "demo")
    assert_user_error(again, "--overwrite")


def test_missing_path(tmp_path):
    assert_user_error(lab("analyze", tmp_path / "nope", "--out", tmp_path / "res"), str(tmp_path / "nope"))
    assert not (tmp_path / "res").exists()


def test_truncated_safetensors_names_the_file(tmp_path, models):
    base, ft = models
    bad = tmp_path / "bad"
    shutil.copytree(ft, bad)
    weights = bad / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert_user_error(lab("analyze", bad, "--base", base, "--out", tmp_path / "res"), "model.safetensors")
    assert not (tmp_path / "res").exists()


def test_full_model_without_base_says_what_to_do(tmp_path, models):
    _, ft = models
    assert_user_error(lab("analyze", ft, "--out", tmp_path / "res"), "--base")


def test_bad_regex_is_a_user_error(tmp_path, models):
    base, ft = models
    assert_user_error(lab("analyze", ft, "--base", base, "--modules", "(", "--out", tmp_path / "res"), "--modules")


# --- every `lab analyze` option reaches lab.analyze and changes the result as documented -------------------
# (--set, --targets delta,weight and bad option values: tests/engine/test_engine_options.py). These run
# the command in this process (typer's CliRunner: the same parsing and the same call into lab.analyze),
# which saves the seconds a fresh interpreter spends importing torch for every run.

def run_lab(*args, env=None) -> subprocess.CompletedProcess:
    """``lab ARGS`` in this process, as a CompletedProcess (an unexpected exception's traceback in stderr)."""
    import traceback

    from typer.testing import CliRunner

    from lab.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["lab", *map(str, args)], result.exit_code, result.stdout, stderr)


Q0 = r"layers\.0\.self_attn\.q_proj$"  # one module: a quick run


def weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return {k: v.astype(np.float64) for k, v in load_file(folder / "model.safetensors").items()}


def stable_rank(matrix: np.ndarray) -> float:
    s = np.linalg.svd(matrix, compute_uv=False)
    return float(np.sum(s**2) / s[0] ** 2)


@pytest.fixture(scope="module")
def more_inputs(models, tmp_path_factory):
    """A LoRA adapter on q/v of the same tiny LLaMA, and a copy of the fine-tune with one NaN weight."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("cli_more")
    model = get_peft_model(builders.tiny_llama(seed=0), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    builders.randomize_lora(model)
    model.save_pretrained(root / "adapter")
    _, ft = models
    nan = root / "nan"
    shutil.copytree(ft, nan)
    tensors = load_file(nan / "model.safetensors")
    tensors["model.layers.0.self_attn.q_proj.weight"][1, 2] = float("nan")
    save_file(tensors, nan / "model.safetensors", metadata={"format": "pt"})
    return root / "adapter", nan


def test_probes_option_chooses_what_is_computed(tmp_path, models):
    base, ft = models
    common = ["analyze", ft, "--base", base, "--out", tmp_path, "--modules", Q0, "--quiet"]
    for run, probes in (("default", None), ("spectra", "spectra"), ("deltas", "deltas")):
        result = run_lab(*common, "--run", run, *(["--probes", probes] if probes else []))
        assert result.returncode == 0, result.stderr
    from lab.probes import available

    defaults = [p for p in available().values() if p.default]
    assert set(open_run(tmp_path / "default").tables()) == {t for p in defaults for t in p.tables}
    assert set(open_run(tmp_path / "spectra").tables()) == {"deltas", "spectra", "singular_values"}
    assert open_run(tmp_path / "deltas").tables() == ["deltas"]
    assert open_run(tmp_path / "spectra").manifest["options"]["probes"] == ["deltas", "spectra"]
    # the numbers are ΔW's, from the files
    w, b = weights(ft), weights(base)
    delta = w["model.layers.0.self_attn.q_proj.weight"] - b["model.layers.0.self_attn.q_proj.weight"]
    spectra = open_run(tmp_path / "spectra").table("spectra")
    assert spectra.stable_rank.tolist() == pytest.approx([stable_rank(delta)], rel=1e-9)
    assert open_run(tmp_path / "deltas").table("deltas").fro_norm.tolist() == pytest.approx([np.linalg.norm(delta)], rel=1e-9)
    assert_user_error(run_lab(*common, "--run", "bad", "--probes", "spectra,nosuchprobe"), "nosuchprobe")
    assert not (tmp_path / "bad").exists()


def test_controls_and_seed(tmp_path, more_inputs):
    adapter, _ = more_inputs
    common = ["analyze", adapter, "--out", tmp_path, "--modules", Q0, "--probes", "spectra", "--quiet"]
    for run, extra in (("plain", []), ("seed0", ["--controls"]), ("again", ["--controls", "--seed", "0"]),
                       ("seed1", ["--controls", "--seed", "1"])):
        result = run_lab(*common, "--run", run, *extra)
        assert result.returncode == 0, result.stderr
    plain = open_run(tmp_path / "plain").table("spectra")
    assert set(plain.source) == {"delta"}
    table = {run: open_run(tmp_path / run).table("spectra").set_index("source") for run in ("seed0", "again", "seed1")}
    spectra = table["seed0"]
    # a Gaussian matrix of ΔW's shape (full rank) and a product of Gaussian factors of the adapter's rank
    assert sorted(spectra.index) == ["delta", "random", "random_lora"]
    assert (spectra.rows == 32).all() and (spectra.cols == 32).all()
    assert spectra.loc["random", "numerical_rank"] == 32 and spectra.loc["random_lora", "numerical_rank"] == 4
    assert spectra.loc["delta", "numerical_rank"] == 4
    # seeded: the same seed gives the same controls, another seed other ones; ΔW's row never changes
    numbers = ["stable_rank", "fro_norm"]
    pd.testing.assert_frame_equal(table["seed0"][numbers], table["again"][numbers])
    for source in ("random", "random_lora"):
        assert not np.allclose(table["seed0"].loc[source, numbers], table["seed1"].loc[source, numbers], rtol=1e-6)
    assert np.array_equal(table["seed1"].loc["delta", numbers], plain.set_index("source").loc["delta", numbers])
    assert [open_run(tmp_path / r).manifest["options"]["seed"] for r in ("seed0", "seed1")] == [0, 1]
    assert [open_run(tmp_path / r).manifest["options"]["controls"] for r in ("plain", "seed0")] == [False, True]


def test_targets_weight_analyses_the_base_weights(tmp_path, models, more_inputs):
    base, _ = models
    adapter, _ = more_inputs
    result = run_lab("analyze", adapter, "--base", base, "--out", tmp_path, "--run", "w", "--modules", Q0, "--probes", "spectra",
                 "--targets", "weight", "--quiet")
    assert result.returncode == 0, result.stderr
    spectra = open_run(tmp_path / "w").table("spectra")
    assert spectra.source.tolist() == ["weight"]
    assert spectra.stable_rank.iloc[0] == pytest.approx(stable_rank(weights(base)["model.layers.0.self_attn.q_proj.weight"]), rel=1e-9)
    # W needs a base; an unknown target is named; neither leaves a run folder
    assert_user_error(run_lab("analyze", adapter, "--out", tmp_path, "--run", "nobase", "--targets", "weight"), "--base")
    assert_user_error(run_lab("analyze", adapter, "--base", base, "--out", tmp_path, "--run", "typo", "--targets", "delta,wieght"),
                      "unknown target", "wieght")
    assert not (tmp_path / "nobase").exists() and not (tmp_path / "typo").exists()


def test_allow_nonfinite(tmp_path, models, more_inputs):
    base, _ = models
    _, nan = more_inputs
    common = ["analyze", nan, "--base", base, "--out", tmp_path, "--modules", r"layers\.0\.self_attn\.(q|v)_proj$",
              "--probes", "spectra", "--quiet"]
    refused = run_lab(*common, "--run", "refused")
    assert_user_error(refused, "model.safetensors", "model.layers.0.self_attn.q_proj.weight", "--allow-nonfinite")
    assert open_run(tmp_path / "refused").manifest["status"] == "incomplete"
    allowed = run_lab(*common, "--run", "allowed", "--allow-nonfinite")
    assert allowed.returncode == 0, allowed.stderr
    run = open_run(tmp_path / "allowed")
    assert run.complete and run.manifest["options"]["allow_nonfinite"] is True
    deltas = run.table("deltas").set_index("module")
    assert np.isnan(deltas.loc["model.layers.0.self_attn.q_proj", "fro_norm"])  # the NaN travels into its rows
    w, b = weights(nan), weights(base)
    v = w["model.layers.0.self_attn.v_proj.weight"] - b["model.layers.0.self_attn.v_proj.weight"]
    assert deltas.loc["model.layers.0.self_attn.v_proj", "fro_norm"] == pytest.approx(np.linalg.norm(v), rel=1e-9)


def test_overwrite_replaces_the_run(tmp_path, models):
    base, ft = models
    common = ["analyze", ft, "--base", base, "--out", tmp_path, "--run", "r", "--modules", Q0, "--quiet"]
    assert run_lab(*common, "--probes", "deltas").returncode == 0
    first = open_run(tmp_path / "r").manifest["started"]
    assert_user_error(run_lab(*common, "--probes", "spectra"), "--overwrite")
    assert open_run(tmp_path / "r").tables() == ["deltas"]  # the refused run left the old one alone
    result = run_lab(*common, "--probes", "spectra", "--overwrite")
    assert result.returncode == 0, result.stderr
    run = open_run(tmp_path / "r")
    assert run.complete and set(run.tables()) == {"deltas", "spectra", "singular_values"}
    assert run.manifest["started"] >= first and run.manifest["options"]["probes"] == ["deltas", "spectra"]


def test_modules_matching_nothing_is_a_user_error(tmp_path, models):
    base, ft = models
    result = run_lab("analyze", ft, "--base", base, "--out", tmp_path, "--run", "none", "--modules", "no_such_module")
    assert_user_error(result, "--modules 'no_such_module'", str(ft))
    assert not (tmp_path / "none" / "manifest.json").exists() or open_run(tmp_path / "none").manifest["status"] != "complete"


# --- the other commands, and the summary `lab analyze` prints ----------------------------------------------

def test_lab_probes_lists_every_registered_probe():
    from lab.probes import available

    result = run_lab("probes")
    assert result.returncode == 0, result.stderr
    heads = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line and not line.startswith(" ")}
    assert sorted(heads) == sorted(available())
    for name, probe in available().items():
        words = heads[name]
        assert words[1] == probe.scope and words[2] == ("default" if probe.default else "opt-in")
        assert " ".join(words[3:]) == "tables: " + ", ".join(probe.tables)


def test_lab_tables_documents_every_column_of_the_schema():
    import importlib

    from lab.store.schema import ID_COLUMNS, TABLES

    importlib.import_module("lab.probes")  # the probes declare their tables

    result = run_lab("tables")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    ids = {c.name for c in ID_COLUMNS}
    sections = re.split(r"^\*\*`(\w+)`\*\*: ", out, flags=re.M)
    documented = dict(zip(sections[1::2], sections[2::2]))
    assert sorted(documented) == sorted(TABLES)
    for name, table in TABLES.items():
        assert documented[name].startswith(table.description)
        rows = re.findall(r"^\| `(\w+)` \| (\w+) \| (.*) \|$", documented[name], flags=re.M)
        assert rows == [(c.name, c.dtype, c.description) for c in table.columns if c.name not in ids]
    for c in ID_COLUMNS:
        assert f"| `{c.name}` | {c.dtype} | {c.description} |" in sections[0]


def test_lab_version_is_the_installed_distribution():
    from importlib.metadata import version

    result = run_lab("version")
    assert result.returncode == 0 and result.stdout.strip() == version("lab")


def test_printed_summary_says_what_was_written(tmp_path, models):
    base, ft = models
    out = tmp_path / "res"
    modules = r"layers\.[01]\.self_attn\.(q|v)_proj$"
    result = run_lab("analyze", ft, "--base", base, "--out", out, "--run", "printed", "--modules", modules,
                     env={"COLUMNS": "250"})
    assert result.returncode == 0, result.stderr
    text = result.stdout
    run = open_run(out / "printed")
    assert f"run printed: complete in {run.manifest['seconds']:.1f} s" in text
    for table in run.tables():  # each table with its row count read back from the parquet file
        rows = len(pd.read_parquet(out / "printed" / f"{table}.parquet"))
        assert re.search(rf"│ {table}\s+│\s+{rows} │ {re.escape(str(out / 'printed' / table))}\.parquet\s+│", text), table
    # the updates read: 4 modules of the one checkpoint, their mean ‖ΔW‖_F from the files
    w, b = weights(ft), weights(base)
    norms = [np.linalg.norm(w[k] - b[k]) for k in w if re.search(modules, k.removesuffix(".weight"))]
    assert len(norms) == 4
    assert re.search(rf"│ ft\s+│\s+│ full │\s+4 │\s+32 │\s+{np.mean(norms):.4g} │", text), text
    assert f"results: {out / 'printed'}" in text
    quiet = run_lab("analyze", ft, "--base", base, "--out", out, "--run", "quiet", "--modules", modules, "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == ""


def test_an_unreachable_scheduler_is_one_line_and_leaves_no_complete_run(tmp_path, models):
    """--scheduler at an address where nothing listens: one line naming the address, exit 2, after
    Dask's client has retried for its 10 s timeout; a run folder, if one was started, stays incomplete."""
    import json
    import socket

    base, ft = models
    with socket.socket() as s:  # a port that was free a moment ago, closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    result = lab("analyze", ft, "--base", base, "--out", tmp_path / "res", "--run", "r", "--scheduler", address)
    assert_user_error(result, f"--scheduler {address}", "cannot reach the Dask scheduler")
    manifest = tmp_path / "res" / "r" / "manifest.json"
    assert not manifest.exists() or json.loads(manifest.read_text())["status"] == "incomplete"
    assert not (tmp_path / "res" / "r" / "deltas.parquet").exists()
