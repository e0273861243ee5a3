"""The run store: tables round-trip with their declared schema in plan order, parts are durable and
atomic, failures never look complete."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from lab.errors import InputError, LabError, RunExistsError
from lab.store import RunWriter, is_complete, list_runs, load_table, open_run
from lab.store.schema import TABLES


def _rows(n):
    rng = np.random.default_rng(0)
    return [
        {"run": "r", "checkpoint": f"checkpoint-{i % 3}", "step": i % 3, "module": f"layers.{i}.q_proj",
         "layer": i, "role": "q" if i % 2 else "v", "kind": "lora", "rows": 8, "cols": 4, "rank_bound": 2,
         "pruned_ranks": None if i % 2 else i, "params": 24, "scale": 2.0, "fro_norm": float(rng.random()),
         "factored": True, "note": ""}
        for i in range(n)
    ]


def test_round_trip_keeps_values_and_declared_column_order(tmp_path):
    rows = _rows(25)
    w = RunWriter(tmp_path, "r")
    w.add_unit("b", {"deltas": rows[10:]})  # finished first, but second in the plan
    w.add_unit("a", {"deltas": rows[:10]})
    w.finish(["a", "b"])
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
    w.add_unit("a", {"deltas": [row]})
    w.finish(["a"])
    df = load_table(tmp_path / "r", "deltas")
    assert df["scale"].isna().all() and df["step"].isna().all()


def test_undeclared_column_or_table_is_refused(tmp_path):
    w = RunWriter(tmp_path, "r")
    with pytest.raises(ValueError, match="no column"):
        w.add_unit("a", {"deltas": [{**_rows(1)[0], "surprise": 1}]})
    with pytest.raises(ValueError, match="not declared"):
        w.add_unit("b", {"no_such_table": [{}]})
    assert w.parts.done() == set() and not (w.parts.root.exists() and list(w.parts.root.iterdir()))  # nothing half-written left


def test_failed_run_leaves_no_table_keeps_its_parts_and_says_incomplete(tmp_path):
    w = RunWriter(tmp_path, "r")
    w.add_unit("a", {"deltas": _rows(5)})
    w.fail(RuntimeError("boom"))
    folder = tmp_path / "r"
    assert not list(folder.glob("*.parquet*"))
    assert not is_complete(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and "boom" in manifest["error"]
    resumed = RunWriter(tmp_path, "r", resume=True)
    assert resumed.parts.done() == {"a"}
    resumed.add_unit("b", {"deltas": _rows(2)})
    resumed.finish(["a", "b"])
    assert is_complete(folder) and len(load_table(folder, "deltas")) == 7 and not (folder / "parts").exists()


@pytest.mark.parametrize("damage", ["torn", "corrupt"])
def test_half_written_part_is_never_read_back(tmp_path, damage):
    w = RunWriter(tmp_path, "r")
    w.add_unit("a", {"deltas": _rows(3)})
    whole = w.parts.path.stat().st_size
    w.add_unit("b", {"deltas": _rows(4)})
    journal = w.parts.path
    data = bytearray(journal.read_bytes())
    if damage == "torn":  # what a kill or a full disk during b's write leaves: its record cut short
        del data[len(data) - 9:]
    else:  # a flipped byte inside b's rows: its checksum no longer matches
        data[whole + (len(data) - whole) // 2] ^= 0xFF
    journal.write_bytes(bytes(data))
    assert RunWriter(tmp_path, "r", resume=True).parts.done() == {"a"}  # resuming cuts b off
    assert journal.stat().st_size == whole
    resumed = RunWriter(tmp_path, "r", resume=True)
    with pytest.raises(RuntimeError, match="no stored rows"):
        resumed.finish(["a", "b"])  # b never finished: the run cannot be passed off as complete
    resumed.add_unit("b", {"deltas": _rows(4)})  # recomputed and appended after the whole records
    resumed.add_unit("b", {"deltas": _rows(1)})  # a retried task finishing twice keeps the first record
    resumed.finish(["a", "b"])
    assert len(load_table(tmp_path / "r", "deltas")) == 7


def test_resume_needs_a_run_folder(tmp_path):
    with pytest.raises(LabError, match="no run to resume"):
        RunWriter(tmp_path, "nothing", resume=True)


def test_existing_run_needs_overwrite_and_never_replaces_foreign_folders(tmp_path):
    RunWriter(tmp_path, "r").finish([])
    with pytest.raises(RunExistsError, match="--overwrite"):
        RunWriter(tmp_path, "r")
    RunWriter(tmp_path, "r", overwrite=True).finish([])
    RunWriter(tmp_path, "broken").fail(RuntimeError("x"))
    with pytest.raises(RunExistsError, match="--resume"):
        RunWriter(tmp_path, "broken")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(RunExistsError, match="not a lab run folder"):
        RunWriter(tmp_path, "mine", overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_lazy_reading_columns_and_filters(tmp_path):
    rows = _rows(30)
    w = RunWriter(tmp_path, "r")
    w.add_unit("a", {"deltas": rows})
    w.finish(["a"])
    run = open_run(tmp_path / "r")
    df = run.table("deltas", columns=["module", "layer"], filters=[("role", "==", "q"), ("layer", "<", 11)])
    expected = pd.DataFrame(rows).query("role == 'q' and layer < 11")[["module", "layer"]]
    assert list(df.columns) == ["module", "layer"]
    assert df.module.tolist() == expected.module.tolist()
    assert [r.name for r in list_runs(tmp_path)] == ["r"]
    assert run.tables() == ["deltas"]
    with pytest.raises(InputError, match="not computed"):
        run.table("entanglement_no_such")


def test_timings_list_every_unit_of_a_finished_run(tmp_path):
    w = RunWriter(tmp_path, "r")
    w.add_unit("a", {"deltas": _rows(2)}, label="ckpt: layers.0.q_proj", seconds=0.5, worker="here")
    w.add_unit("b", {"deltas": _rows(1)}, label="ckpt: layers.1.q_proj", seconds=2.0, worker="there")
    w.finish(["a", "b"])
    timings = open_run(tmp_path / "r").timings()
    assert timings.key.tolist() == ["a", "b"]
    assert timings.nlargest(1, "seconds").label.item() == "ckpt: layers.1.q_proj"


def test_upsert_replaces_the_rows_of_the_same_key_and_a_failed_write_keeps_the_old_table(tmp_path, monkeypatch):
    from lab.store.writer import upsert_table

    rows = _rows(6)  # checkpoints 0, 1, 2, twice each
    upsert_table(tmp_path, "m", "deltas", rows, "checkpoint")
    newer = [{**r, "fro_norm": 10.0 + i} for i, r in enumerate(_rows(6)) if r["checkpoint"] == "checkpoint-1"]
    path, table = upsert_table(tmp_path, "m", "deltas", newer, "checkpoint")
    df = pd.read_parquet(path)
    assert len(df) == 6 == table.num_rows
    assert sorted(df[df.checkpoint == "checkpoint-1"].fro_norm) == sorted(r["fro_norm"] for r in newer)
    kept = [r["fro_norm"] for r in rows if r["checkpoint"] != "checkpoint-1"]
    assert sorted(df[df.checkpoint != "checkpoint-1"].fro_norm) == sorted(kept)

    before = path.read_bytes()

    def interrupted(table, where, **kw):  # the disk fills up half-way through the parquet file
        open(where, "wb").write(b"PAR1 half")
        raise OSError("No space left on device")

    monkeypatch.setattr(pq, "write_table", interrupted)
    with pytest.raises(OSError):
        upsert_table(tmp_path, "m", "deltas", _rows(2), "checkpoint")
    assert path.read_bytes() == before  # the table still complete, as it was
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial file left beside it
