"""The contract every damaged input must meet, and the strategies the fuzz tests share.

The contract (issue 14): ``lab.analyze`` on any input either returns a complete run whose
numbers are finite (a value may be empty only in the rows its column's schema rule,
``Column.nan_when``, allows: issue 27), or raises
``lab.errors.LabError`` whose message is one line naming the damaged file; no other exception
escapes, no pickle runs code, and a run that failed is never left with manifest status
``complete``. Through the CLI the same means: exit 0, or exit 2 with one stderr line and no
traceback.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from hypothesis import event, settings
from hypothesis.control import currently_in_test_context
from hypothesis import strategies as st

import lab
from lab.errors import LabError
from lab.store.schema import TABLES

RUN = "fuzz"


@dataclass(frozen=True)
class Inputs:
    """A pristine checkpoint folder and the base it was trained from."""

    ckpt: Path
    base: Path | None


def budget(share: float) -> settings:
    """Settings giving a test ``share`` of the active profile's ``max_examples`` (at least 2)."""
    return settings(max_examples=max(2, round(settings.default.max_examples * share)))


@contextmanager
def workspace() -> Iterator[Path]:
    """A fresh folder for one example (hypothesis reuses fixtures, so each example copies into its own)."""
    folder = Path(tempfile.mkdtemp(prefix="lab-fuzz-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def copy_inputs(inputs: Inputs, work: Path, *, base: bool = False) -> Inputs:
    """``inputs`` copied under ``work`` (the base too when ``base``, for tests that damage it)."""
    ckpt = Path(shutil.copytree(inputs.ckpt, work / inputs.ckpt.name))
    base_path = inputs.base
    if base and inputs.base is not None:
        base_path = Path(shutil.copytree(inputs.base, work / inputs.base.name))
    return Inputs(ckpt, base_path)


# ---- the contract -----------------------------------------------------------------------------


def _zero_modules(run) -> set[tuple[str, str]]:
    """(checkpoint, module) of the updates that are exactly zero (their deltas row has fro_norm 0)."""
    deltas = run.table("deltas")
    return set(map(tuple, deltas.loc[deltas.fro_norm == 0, ["checkpoint", "module"]].to_numpy()))


def check_empty_values(run) -> None:
    """No ±inf anywhere, and an empty value (NaN or null) only in a row that its column's schema rule
    (``Column.nan_when``, lab/store/schema.py) allows: checked row by row, so a column that is empty in
    every row passes only if every row is one the rule allows."""
    has_base = bool(run.manifest["inputs"].get("base"))
    zero = _zero_modules(run)
    for name in run.tables():
        frame = run.table(name)
        declared = {c.name: c for c in TABLES[name].columns}
        for column in frame.columns:
            if frame[column].dtype.kind not in "fiu" and not str(frame[column].dtype).startswith(("Int", "Float")):
                continue
            values = frame[column].to_numpy(dtype=float, na_value=np.nan)
            assert not np.isinf(values).any(), (name, column, "holds ±inf", frame[[column]].head())
            rule = declared[column].nan_when
            for i in np.flatnonzero(np.isnan(values)):
                row = frame.iloc[i].to_dict()
                zero_matrix = row.get("source", "delta") == "delta" and (row.get("checkpoint"), row.get("module")) in zero
                assert rule is not None and rule.allows(row, has_base=has_base, zero_matrix=zero_matrix), (
                    name, column, "is empty in a row its schema rule does not allow", rule, row)


def check_run(run) -> None:
    """A finished run: manifest ``complete``, a non-empty deltas table, and :func:`check_empty_values`."""
    assert run.complete, run.manifest
    tables = run.tables()
    assert "deltas" in tables, tables
    assert len(run.table("deltas")) > 0
    check_empty_values(run)


def names(message: str, path: Path) -> bool:
    """Whether ``message`` names ``path``: its name and its folder's name (a base and a fine-tune
    both hold a ``model.safetensors``; the folder tells them apart)."""
    return path.name in message and path.parent.name in message


def check_error(error: LabError, blamed: Sequence[Path]) -> str:
    """One line that names (at least) one of the ``blamed`` files; returns the message."""
    message = str(error)
    assert message.strip(), repr(error)
    assert "\n" not in message and "\r" not in message, f"more than one line: {message!r}"
    assert any(names(message, p) for p in blamed), f"names none of {[str(p) for p in blamed]}: {message}"
    return message


def check_failed_run(out: Path) -> None:
    """A run folder left behind by a failed analysis never claims to be complete."""
    manifest = out / RUN / "manifest.json"
    if manifest.exists():
        assert json.loads(manifest.read_text()).get("status") != "complete", manifest.read_text()


def _event(outcome: str) -> None:
    """Count outcomes in hypothesis's statistics (``--hypothesis-show-statistics``); plain tests skip it."""
    if currently_in_test_context():
        event(outcome)


def analyze_contract(work: Path, inputs: Inputs, blamed: Sequence[Path], *, with_base: bool = True,
                     probes: Sequence[str] | None = None):
    """Run ``lab.analyze`` in-process and check the contract; returns the run or the LabError."""
    out = work / "results"
    try:
        run = lab.analyze(inputs.ckpt, base=inputs.base if with_base else None, out=out, run=RUN,
                          probes=probes, progress=False)
    except LabError as error:
        _event(f"LabError: {type(error).__name__}")
        if os.environ.get("FUZZ_SHOW"):  # debugging aid: see what users would read
            print(f"\n{type(error).__name__}: {error}", file=sys.__stderr__)
        check_error(error, blamed)
        check_failed_run(out)
        return error
    _event("complete run")
    check_run(run)
    return run


def lab_command() -> list[str]:
    """The installed ``lab`` console script of this interpreter (``python -m lab.cli`` without one)."""
    script = Path(sys.executable).with_name("lab")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "lab.cli"]


def cli_contract(work: Path, inputs: Inputs, blamed: Sequence[Path], *, with_base: bool = True,
                 extra: Sequence[str] = ()) -> int:
    """Run ``lab analyze`` (with ``extra`` arguments) in a subprocess: exit 0 with a complete run,
    or exit 2 with one stderr line."""
    out = work / "results"
    args = [*lab_command(), "analyze", str(inputs.ckpt), "--out", str(out), "--run", RUN, "--quiet", *extra]
    if with_base and inputs.base is not None:
        args += ["--base", str(inputs.base)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(args, capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert "Traceback" not in done.stderr, done.stderr
    if done.returncode == 0:
        from lab.store import Run

        check_run(Run(out / RUN))
        return 0
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, f"stderr is not one line: {done.stderr!r}"
    assert lines[0].startswith("lab: error: "), lines[0]
    assert any(names(lines[0], p) for p in blamed), f"names none of {[str(p) for p in blamed]}: {lines[0]}"
    check_failed_run(out)
    return 2


# ---- shared strategies ------------------------------------------------------------------------

# Numbers at the edges of what float64 and JSON hold: overflow, underflow, subnormals, NaN.
EDGE_NUMBERS = (
    0, -0.0, 1, -1, 2, 0.5, 1e-3, 7, 2**31, 2**63, 2**64, 10**400, -(10**400),
    1e150, 1e154, 1e160, 1e200, 1e300, 1e308, 1.7976931348623157e308, -1e308,
    1e-150, 1e-154, 1e-160, 1e-300, 1e-308, 1e-320, 5e-324, -5e-324,
    math.nan, math.inf, -math.inf,
)

edge_numbers = st.sampled_from(EDGE_NUMBERS)
# Floats spread evenly over decimal exponents -330 … 330 (±0 below, ±inf above): hypothesis's
# own floats stay mostly near 1, and the breakage sits at the extremes.
magnitudes = st.builds(lambda m, e: float(f"{m:.6f}e{e}"), st.floats(-9.999, 9.999), st.integers(-330, 330))
numbers = st.one_of(edge_numbers, magnitudes, magnitudes, st.integers(), st.floats())
scalars = st.none() | st.booleans() | numbers | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


def dumps(value: object) -> str:
    """JSON text as Python writes it (NaN and Infinity included: json.loads reads them back)."""
    return json.dumps(value)
