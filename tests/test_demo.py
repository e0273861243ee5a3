"""`lab demo` in a tiny configuration (one LoRA rank and full fine-tuning, two short steps): the
fine-tunes are analysed, the valley numbers and the summary match SVDs of the checkpoints computed
here, both report files are written, cached work is reused only when complete and unchanged (judged
by the files on disk), and the analysis script reads the runs."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from lab.demo import DEMO_MODULES, QUICK, REPORT_STAMP, one_blas_thread, run_demo
from lab.finetune.models import minilm_path
from lab.finetune.train import COMPLETE_FILE, CONFIG_FILE

# `lab demo --quick`: the smallest grid (LoRA r = 4 and full, two steps of four texts), and short windows
# for the probes that run the model on text (three lengths: the thresholds' growth is fitted over three
# or more); the tests below rely on these sizes
TINY = dict(QUICK, progress=False)
assert TINY["ranks"] == (4,) and TINY["full"] and TINY["steps"] == 2 and TINY["save_every"] == 1


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    return run_demo(workdir, report=True, **TINY)


def _row_col_entropy(delta: np.ndarray) -> float:
    """S at the row|column cut, independently: the Shannon entropy of ΔW's normalised σ²."""
    with one_blas_thread():  # a 384×384 SVD is 25× slower with two threads on a busy machine
        s = np.linalg.svd(delta.astype(np.float64), compute_uv=False)
    p = s**2 / np.sum(s**2)
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)))


def test_demo_runs_are_complete_and_cover_the_grid(demo):
    assert set(demo.finetunes) == {"lora-r4", "full"} and set(demo.runs) == {"lora-r4", "full"}
    for name, run in demo.runs.items():
        assert run.complete
        deltas = run.table("deltas")
        assert sorted(deltas.step.unique()) == [1, 2]
        assert set(deltas.role) == {"q", "v"} and len(deltas) == 2 * 12  # 6 layers × (query, value) per step
        assert run.manifest["options"]["controls"] is True
        assert (demo.finetunes[name] / COMPLETE_FILE).is_file()


def _deltas(demo, name: str, step: int) -> dict[str, np.ndarray]:
    """ΔW of every query/value module of one checkpoint, straight from the files: s·B·A with the
    adapter config's alpha/r, or W_ft − W_base (full)."""
    ckpt = demo.finetunes[name] / f"checkpoint-{step}"
    if name.startswith("lora"):
        cfg = json.loads((ckpt / "adapter_config.json").read_text())
        raw = load_file(ckpt / "adapter_model.safetensors")
        scale = cfg["lora_alpha"] / cfg["r"]
        modules = sorted(k.removeprefix("base_model.model.").removesuffix(".lora_A.weight") for k in raw if k.endswith(".lora_A.weight"))
        return {m: scale * raw[f"base_model.model.{m}.lora_B.weight"].astype(np.float64)
                @ raw[f"base_model.model.{m}.lora_A.weight"].astype(np.float64) for m in modules}
    base = load_file(minilm_path() / "model.safetensors")
    tuned = load_file(ckpt / "model.safetensors")
    return {k.removesuffix(".weight"): tuned[k].astype(np.float64) - base[k].astype(np.float64)
            for k in sorted(tuned) if re.search(DEMO_MODULES, k.removesuffix(".weight"))}


def test_valley_numbers_match_an_svd_of_the_checkpoints(demo):
    for name, run in demo.runs.items():
        summary = run.table("entanglement_summary")
        for step in (1, 2):
            rows = summary[(summary.source == "delta") & (summary.step == step)].set_index("module")
            deltas = _deltas(demo, name, step)
            assert sorted(rows.index) == sorted(deltas) and len(deltas) == 12
            for module, delta in deltas.items():
                expected = _row_col_entropy(delta)
                assert rows.loc[module, "valley_entropy"] == pytest.approx(expected, abs=1e-6), f"{name} step {step} {module}"
                if name.startswith("lora"):
                    assert expected <= math.log(4) + 1e-9


def _page_entropy(d_a: int, d_b: int) -> float:
    """Page's mean entropy for d_A ≤ d_B, summed here term by term (Page 1993)."""
    d_a, d_b = sorted((d_a, d_b))
    return float(np.sum(1.0 / np.arange(d_b + 1, d_a * d_b + 1, dtype=np.float64)) - (d_a - 1) / (2 * d_b))


def _sigma_entropy(sigma: np.ndarray) -> float:
    p = np.asarray(sigma, dtype=np.float64) ** 2
    p = p[p > 0] / p.sum()
    return float(-np.sum(p * np.log(p)))


def test_summary_table_matches_an_independent_computation(demo):
    """The demo's summary (mean ± std of S at the row|column cut per run and step, ln r, Page, depth)
    against numpy SVDs of the checkpoint files, Page's sum written out here, and, for the random
    controls, the entropy of σ² from the singular_values table (another probe's output)."""
    expected = []
    for name in demo.runs:
        for step in (1, 2):
            entropies = [_row_col_entropy(delta) for delta in _deltas(demo, name, step).values()]
            r = 4 if name == "lora-r4" else 384
            expected.append((name, "ΔW", step, r, entropies))
        sv = demo.runs[name].table("singular_values")
        for source, what in (("random", "random Gaussian"), ("random_lora", "random B·A")):
            controls = sv[sv.source == source]
            if controls.empty:
                continue
            entropies = [_sigma_entropy(g.sort_values("index").sigma.to_numpy()) for _, g in controls.groupby("module")]
            r = 4 if source == "random_lora" else 384
            expected.append((name, what, None, r, entropies))
    s = demo.summary
    assert len(s) == len(expected)
    page = _page_entropy(384, 384)  # ΔW is 384×384: the row|column cut splits 384 | 384
    for name, what, step, r, entropies in expected:
        rows = s[(s.run == name) & (s.what == what) & (s.step.isna() if step is None else s.step == step)]
        assert len(rows) == 1, (name, what, step)
        row = rows.iloc[0]
        assert row.modules == len(entropies) and row.rank_bound == r
        assert row.entropy == pytest.approx(np.mean(entropies), abs=1e-6), (name, what, step)
        if len(entropies) > 1:
            assert row.entropy_std == pytest.approx(np.std(entropies, ddof=1), abs=1e-6)
        assert row.ln_r == pytest.approx(math.log(r), rel=1e-12)
        assert row.page == pytest.approx(page, rel=1e-9)
        assert row.depth == pytest.approx(page - np.mean(entropies), abs=1e-6)
    assert {"random Gaussian", "random B·A"} <= set(s.what)  # both kinds of control are in the summary
    assert (demo.workdir / "summary.csv").is_file()


def test_report_has_both_the_html_and_the_pdf(demo):
    """Both formats are required: the demo falls back to HTML alone when the PDF writer fails, and
    that fallback must not pass for a complete report."""
    from pypdf import PdfReader

    assert sorted(p.suffix for p in demo.report) == [".html", ".pdf"], demo.report
    html = next(p for p in demo.report if p.suffix == ".html")
    pdf = next(p for p in demo.report if p.suffix == ".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and "lora-r4" in html.read_text(encoding="utf-8")
    text = " ".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "lora-r4" in text and "full" in text


def _files(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under ``folder`` by relative path: (inode, mtime in ns, size); a rewritten file differs."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _snapshot(workdir: Path) -> dict[tuple[str, str], dict]:
    """Files of each fine-tune, analysis and merge: {("finetunes" | "results" | "merges", name): _files(...)}."""
    return {(kind, p.name): _files(p) for kind in ("finetunes", "results", "merges") if (workdir / kind).is_dir()
            for p in sorted((workdir / kind).iterdir())}


def _rewritten(before: dict, after: dict) -> set[tuple[str, str]]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


@pytest.fixture
def workdir_copy(demo, tmp_path):
    """A copy of the demo's workdir, so that tests which redo parts of it leave the shared one alone."""
    import shutil

    copy = tmp_path / "demo"
    shutil.copytree(demo.workdir, copy)
    return copy


def test_second_demo_reuses_complete_unchanged_work(demo, workdir_copy):
    before = _snapshot(workdir_copy)
    again = run_demo(workdir_copy, report=False, **TINY)
    assert _rewritten(before, _snapshot(workdir_copy)) == set()  # no file of a fine-tune or an analysis touched
    assert again.summary.equals(demo.summary)

    # an unfinished fine-tune (no completion marker) is redone, and so is its analysis; the other is kept
    os.remove(workdir_copy / "finetunes" / "full" / COMPLETE_FILE)
    before = _snapshot(workdir_copy)
    third = run_demo(workdir_copy, report=False, **TINY)
    assert _rewritten(before, _snapshot(workdir_copy)) == {("finetunes", "full"), ("results", "full")}
    assert (workdir_copy / "finetunes" / "full" / COMPLETE_FILE).is_file()
    # same seed, same weights: the redone fine-tune gives the same valley numbers
    pd.testing.assert_frame_equal(third.summary.reset_index(drop=True), demo.summary.reset_index(drop=True))


def test_changed_probes_or_options_are_analysed_again(demo, workdir_copy):
    # other probes: both analyses are redone with them, the fine-tunes are kept
    before = _snapshot(workdir_copy)
    spectra_only = run_demo(workdir_copy, report=False, probes=["spectra"], **TINY)
    assert _rewritten(before, _snapshot(workdir_copy)) == {("results", "lora-r4"), ("results", "full")}
    for run in spectra_only.runs.values():
        assert run.complete and set(run.manifest["options"]["probes"]) == {"deltas", "spectra"}  # deltas: always
        assert "spectra" in run.tables() and "entanglement" not in run.tables()

    # back to every probe: analysed again, and the tables equal the first analysis's
    before = _snapshot(workdir_copy)
    again = run_demo(workdir_copy, report=False, **TINY)
    assert _rewritten(before, _snapshot(workdir_copy)) == {("results", "lora-r4"), ("results", "full")}
    pd.testing.assert_frame_equal(again.summary, demo.summary)

    # an analysis made with other options (here: another module pattern in its manifest) is redone
    manifest = workdir_copy / "results" / "lora-r4" / "manifest.json"
    recorded = json.loads(manifest.read_text())
    recorded["options"]["modules"] = r"attention\.self\.query$"
    manifest.write_text(json.dumps(recorded))
    before = _snapshot(workdir_copy)
    run_demo(workdir_copy, report=False, **TINY)
    assert _rewritten(before, _snapshot(workdir_copy)) == {("results", "lora-r4")}
    assert json.loads(manifest.read_text())["options"]["modules"] == DEMO_MODULES

    # ... and so is one made with other probe options (the demo's sizes for a probe, changed by an upgrade)
    manifest = workdir_copy / "results" / "full" / "manifest.json"
    recorded = json.loads(manifest.read_text())
    probe, option = next((name, key) for name, values in recorded["options"]["probe_options"].items()
                         for key, value in values.items() if type(value) is int)
    recorded["options"]["probe_options"][probe][option] += 1
    manifest.write_text(json.dumps(recorded))
    before = _snapshot(workdir_copy)
    run_demo(workdir_copy, report=False, **TINY)
    assert _rewritten(before, _snapshot(workdir_copy)) == {("results", "full")}, (probe, option)

    # a fine-tune with other options (another seed) is trained again, and its analysis redone
    before = _snapshot(workdir_copy)
    other = run_demo(workdir_copy, report=False, **{**TINY, "full": False}, seed=1)
    assert _rewritten(before, _snapshot(workdir_copy)) == {("finetunes", "lora-r4"), ("results", "lora-r4")}
    assert json.loads((workdir_copy / "finetunes" / "lora-r4" / CONFIG_FILE).read_text())["options"]["seed"] == 1
    mine, first = (s[(s.run == "lora-r4") & (s.what == "ΔW")].entropy.to_numpy() for s in (other.summary, demo.summary))
    assert mine.shape == first.shape and not np.allclose(mine, first, rtol=0, atol=1e-9)  # other weights, other numbers


def test_analysis_script_reports_the_measured_numbers(demo, tmp_path):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "analyses" / "entanglement_valley.py"
    spec = importlib.util.spec_from_file_location("entanglement_valley", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--workdir", str(demo.workdir), "--out", str(tmp_path)]) == 0
    png, md = tmp_path / "entanglement_valley.png", tmp_path / "entanglement_valley.md"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    t = demo.runs["lora-r4"].table("entanglement_summary")
    d = t[(t.source == "delta") & (t.step == 2)]  # a demo workdir is read as one seed: its mean is the module mean
    assert f"| lora-r4 | {d.valley_entropy.mean():.3f} | {d.valley_depth.mean():.3f} | {d.valley_neighbour_depth.mean():.3f} |" in text
    assert "S ≤ ln r at the row|column cut for a rank-r update: 24/24 LoRA matrices (all seeds and steps): passed." in text
    assert "disagree" not in text and "is distinct from that in FFT" in text


def test_demo_modules_pattern_selects_query_and_value_only():
    import re

    names = [f"encoder.layer.{i}.attention.self.{m}" for i in range(2) for m in ("query", "key", "value")]
    names += ["encoder.layer.0.attention.output.dense", "encoder.layer.0.intermediate.dense"]
    assert [n for n in names if re.search(DEMO_MODULES, n)] == [n for n in names if n.endswith(("query", "value"))]



def test_print_findings_prints_the_summary_the_report_and_the_timings(demo):
    """What ``lab demo`` prints after its run: one table row per summary row with its numbers as the
    summary holds them, the report's files, the results folder and the phases' seconds."""
    from rich.console import Console

    from lab.demo import print_findings

    console = Console(record=True, width=200, force_terminal=False)
    print_findings(demo, console)
    text = console.export_text()
    lines = text.splitlines()
    assert "Entanglement entropy at the row|column cut" in text
    for row in demo.summary.itertuples(index=False):
        step = "" if pd.isna(row.step) else str(int(row.step))
        printed = [line for line in lines if row.run in line and row.what in line and f"{row.entropy:.3f}" in line
                   and f"{row.page:.3f}" in line and f"{row.depth:.3f}" in line and (not step or f" {step} " in line)]
        assert printed, (row.run, row.what, step)
    for path in demo.report:
        assert f"report: {path}" in text
    assert f"runs: {demo.workdir / 'results'}" in text
    assert all(f"{phase} " in text for phase in demo.seconds)


def test_demo_command_through_the_cli_runs_jobs_in_parallel_and_equals_the_serial_demo(demo, tmp_path):
    """``lab demo --quick --jobs 2``: the command's body (its grid, the worker processes, print_findings)
    through the installed console script; two one-threaded worker processes give the numbers the
    serial fixture's demo gives (same seed, same sizes), and the printed table holds them."""
    import subprocess
    import sys

    lab = str(Path(sys.executable).with_name("lab"))
    workdir = tmp_path / "cli"
    done = subprocess.run([lab, "demo", "--quick", "--jobs", "2", "--no-report", "--quiet", "--workdir", str(workdir)],
                          capture_output=True, text=True, timeout=800, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr[-3000:]
    # its workers load the model many times: no transformers loading bar or deprecation noise per load
    assert "Loading weights" not in done.stderr and "FutureWarning" not in done.stderr, done.stderr[-3000:]
    summary = pd.read_csv(workdir / "summary.csv")
    expected = demo.summary.copy()
    expected["step"] = expected["step"].astype("float64")
    assert len(summary) == len(expected)
    pd.testing.assert_frame_equal(summary.reset_index(drop=True), expected.reset_index(drop=True),
                                  check_dtype=False, rtol=0, atol=1e-9)
    for name in ("lora-r4", "full"):
        assert (workdir / "finetunes" / name / COMPLETE_FILE).is_file()
        assert json.loads((workdir / "results" / name / "manifest.json").read_text())["status"] == "complete"
    lines = done.stdout.splitlines()
    for row in demo.summary.itertuples(index=False):
        step = "" if pd.isna(row.step) else str(int(row.step))
        assert [line for line in lines if row.run in line and f"{row.entropy:.3f}" in line and f"{row.depth:.3f}" in line
                and (not step or f" {step} " in line)], (row.run, row.what, step, done.stdout)
    assert f"runs: {workdir / 'results'}" in done.stdout.replace("\n", "")
    assert "CPU of the jobs: finetune" in done.stdout and "analyze" in done.stdout

    # the same command again: every fine-tune and analysis is reused, nothing is rewritten
    before = _snapshot(workdir)
    again = subprocess.run([lab, "demo", "--quick", "--jobs", "2", "--no-report", "--quiet", "--workdir", str(workdir)],
                           capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    assert again.returncode == 0, again.stderr[-3000:]
    assert _rewritten(before, _snapshot(workdir)) == set()
    assert "reused 4 cached step(s)" in again.stdout  # two fine-tunes and two analyses


def test_a_warm_demo_reuses_its_report_until_the_results_change(demo, workdir_copy):
    """The report is written again only when what it is made from changed: here a results file's
    modification time (an analysis rewritten) makes the next demo write it again."""
    report = workdir_copy / "report"
    # a first warm demo: the report is current after it (rewritten if lab's report code changed since
    # the fixture wrote it, as it may in a working tree being edited)
    run_demo(workdir_copy, report=True, **TINY)
    stamp = json.loads((report / REPORT_STAMP).read_text())
    assert sorted(stamp["files"]) == ["report.html", "report.pdf"]

    before = _files(report)
    warm = run_demo(workdir_copy, report=True, **TINY)
    assert _files(report) == before and "report" in warm.reused
    assert sorted(p.name for p in warm.report) == ["report.html", "report.pdf"] and all(p.is_file() for p in warm.report)

    table = workdir_copy / "results" / "lora-r4" / "deltas.parquet"
    os.utime(table, ns=(table.stat().st_atime_ns, table.stat().st_mtime_ns + 1_000_000_000))
    again = run_demo(workdir_copy, report=True, **TINY)
    assert "report" not in again.reused
    after = _files(report)
    assert {"report.html", "report.pdf"} <= set(after) and all(after[n] != before[n] for n in ("report.html", "report.pdf"))
    assert json.loads((report / REPORT_STAMP).read_text())["from"] != stamp["from"]


def test_the_pipeline_starts_each_job_after_those_it_waits_for_best_rank_first():
    """``_scheduled`` on a real pool: at most ``slots`` jobs at once, none before the jobs it waits for have
    ended, the ready job of smallest rank first, and every job's return handed back once."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from lab.demo import _Job, _scheduled

    events, lock, running = [], threading.Lock(), [0, 0]  # running now, most at once

    def job(name):
        with lock:
            events.append(("start", name))
            running[0] += 1
            running[1] = max(running[1], running[0])
        threading.Event().wait(0.05)
        with lock:
            running[0] -= 1
            events.append(("end", name))
        return name.upper()

    jobs = {"finetune:a": _Job(job, ("finetune:a",), rank=(0, -2)), "finetune:b": _Job(job, ("finetune:b",), rank=(0, -1)),
            "squeeze:s": _Job(job, ("squeeze:s",), frozenset({"finetune:a"}), rank=(1,)),
            "analyze:a": _Job(job, ("analyze:a",), frozenset({"finetune:a"}), rank=(2, -2)),
            "analyze:b": _Job(job, ("analyze:b",), frozenset({"finetune:b"}), rank=(2, -1)),
            "analyze:s": _Job(job, ("analyze:s",), frozenset({"squeeze:s"}), rank=(2, 0)),
            "analyze:c": _Job(job, ("analyze:c",), rank=(2, -3))}  # nothing to wait for, but ranked after the fine-tunes
    for slots in (1, 2):
        events.clear()
        running[:] = [0, 0]
        with ThreadPoolExecutor(max_workers=4) as pool:  # more workers than slots: the limit is the scheduler's
            returned = dict(_scheduled(pool, jobs, slots))
        assert returned == {name: name.upper() for name in jobs}
        assert running[1] <= slots
        at = {(kind, name): i for i, (kind, name) in enumerate(events)}
        for name, j in jobs.items():
            assert all(at[("end", first)] < at[("start", name)] for first in j.after), (slots, name, events)
        started = [name for kind, name in events if kind == "start"]
        assert started[:2] == ["finetune:a", "finetune:b"]
        if slots == 1:  # one at a time: always the best ready job
            assert started == ["finetune:a", "finetune:b", "squeeze:s", "analyze:c", "analyze:a", "analyze:b", "analyze:s"]


def test_the_pipeline_raises_the_first_failure():
    from concurrent.futures import ThreadPoolExecutor

    from lab.demo import _Job, _scheduled
    from lab.errors import InputError

    def fail():
        raise InputError("a bad input")

    jobs = {"finetune:a": _Job(fail, ()), "analyze:a": _Job(str, ("never",), frozenset({"finetune:a"}))}
    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(InputError, match="a bad input"):
        list(_scheduled(pool, jobs, 2))
