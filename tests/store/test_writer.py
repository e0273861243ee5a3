"""The run store: tables round-trip with their declared schema, failures never look complete."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from lab.errors import InputError, RunExistsError
from lab.store import RunWriter, is_complete, list_runs, load_table, open_run
from lab.store.schema import TABLES


def _rows(n):
    rng = np.random.default_rng(0)
    return [
        {"run": "r", "checkpoint": f"checkpoint-{i % 3}", "step": i % 3, "module": f"layers.{i}.q_proj",
         "layer": i, "role": "q" if i % 2 else "v", "kind": "lora", "rows": 8, "cols": 4, "rank_bound": 2,
         "scale": 2.0, "fro_norm": float(rng.random()), "factored": True, "note": ""}
        for i in range(n)
    ]


def test_round_trip_keeps_values_and_declared_column_order(tmp_path):
    rows = _rows(25)
    w = RunWriter(tmp_path, "r", flush_rows=7)  # several row groups
    w.add("deltas", rows[:10])
    w.add("deltas", rows[10:])
    w.finish()
    df = load_table(tmp_path / "r", "deltas")
    assert list(df.columns) == TABLES["deltas"].names
    expected = pd.DataFrame(rows)[TABLES["deltas"].names]
    pd.testing.assert_frame_equal(df.reset_index(drop=True), expected, check_dtype=False)
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["tables"] == {"deltas": 25}
    # descriptions travel with the parquet schema, for anyone reading the file without lab
    field = pq.read_schema(tmp_path / "r" / "deltas.parquet").field("fro_norm")
    assert field.metadata[b"description"].decode() == TABLES["deltas"].columns[-3].description


def test_missing_values_become_nulls(tmp_path):
    row = _rows(1)[0]
    del row["scale"], row["step"]
    w = RunWriter(tmp_path, "r")
    w.add("deltas", [row])
    w.finish()
    df = load_table(tmp_path / "r", "deltas")
    assert df["scale"].isna().all() and df["step"].isna().all()


def test_undeclared_column_or_table_is_refused(tmp_path):
    w = RunWriter(tmp_path, "r")
    with pytest.raises(ValueError, match="no column"):
        w.add("deltas", [{**_rows(1)[0], "surprise": 1}])
    with pytest.raises(ValueError, match="not declared"):
        w.add("no_such_table", [{}])


def test_failed_run_leaves_no_table_and_says_incomplete(tmp_path):
    w = RunWriter(tmp_path, "r", flush_rows=2)
    w.add("deltas", _rows(5))  # some row groups already on disk as .partial
    w.fail(RuntimeError("boom"))
    folder = tmp_path / "r"
    assert not list(folder.glob("*.parquet*"))
    assert not is_complete(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and "boom" in manifest["error"]


def test_existing_run_needs_overwrite_and_never_replaces_foreign_folders(tmp_path):
    RunWriter(tmp_path, "r").finish()
    with pytest.raises(RunExistsError, match="--overwrite"):
        RunWriter(tmp_path, "r")
    RunWriter(tmp_path, "r", overwrite=True).finish()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(RunExistsError, match="not a lab run folder"):
        RunWriter(tmp_path, "mine", overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_lazy_reading_columns_and_filters(tmp_path):
    rows = _rows(30)
    w = RunWriter(tmp_path, "r", flush_rows=10)
    w.add("deltas", rows)
    w.finish()
    run = open_run(tmp_path / "r")
    df = run.table("deltas", columns=["module", "layer"], filters=[("role", "==", "q"), ("layer", "<", 11)])
    expected = pd.DataFrame(rows).query("role == 'q' and layer < 11")[["module", "layer"]]
    assert list(df.columns) == ["module", "layer"]
    assert df.module.tolist() == expected.module.tolist()
    assert [r.name for r in list_runs(tmp_path)] == ["r"]
    assert run.tables() == ["deltas"]
    with pytest.raises(InputError, match="not computed"):
        run.table("entanglement_no_such")
