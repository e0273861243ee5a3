"""The lab command: help for every option, user errors as one stderr line with exit code 2."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import builders

LAB = [sys.executable, "-m", "lab.cli"]


def lab(*args, cwd=None):
    return subprocess.run([*LAB, *map(str, args)], capture_output=True, text=True, cwd=cwd)


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
