"""The base cache: a sweep decomposes each base W once, and the rows are those of a run without it.

Real tiny checkpoints (a LLaMA base, a training output of three full fine-tunes, two PEFT LoRAs);
every probe that derives something from W alone runs (spectra and entanglement on ΔW and W, the
alignment with W, intruders, esd on ΔW, W and W + ΔW).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pandas.testing import assert_frame_equal
from safetensors.numpy import load_file

import lab
from lab.engine.basecache import CACHE_DIR, SUFFIX, read_entry, write_entry
from lab.store import open_run
from references import numpy_entropies

PROBES = ["deltas", "entanglement", "spectra", "intruders", "esd"]
TARGETS = ["delta", "weight"]


def _analyze(inputs, out: Path, run: str, **kwargs):
    return lab.analyze(inputs, base=kwargs.pop("base"), out=out, run=run, probes=PROBES, targets=TARGETS,
                       overwrite=True, progress=False, **kwargs)


def _assert_same_tables(a, b) -> None:
    assert sorted(a.tables()) == sorted(b.tables())
    for name in a.tables():
        x, y = a.table(name), b.table(name)
        x, y = x.drop(columns=["run"]), y.drop(columns=["run"])
        assert_frame_equal(x, y, check_exact=True, obj=name)


def _entries(out: Path) -> list[Path]:
    return sorted((out / CACHE_DIR).rglob(f"*{SUFFIX}"))


def _module_units(run) -> list[dict]:
    return [u for u in run.manifest["units"] if "base_cache" in u]


def test_sweep_reuses_base_entries_and_rows_equal_a_run_without_cache(tmp_path, engine_inputs):
    base = engine_inputs["base"]
    inputs = [engine_inputs["train"], *engine_inputs["adapters"]]
    plain = _analyze(inputs, tmp_path / "plain", "r", base=base, base_cache=False)
    assert not (tmp_path / "plain" / CACHE_DIR).exists() and plain.manifest["base_cache"] is None
    assert not _module_units(plain)

    out = tmp_path / "cached"
    first = _analyze(inputs, out, "r", base=base)
    _assert_same_tables(first, plain)
    units = _module_units(first)
    assert units and all(u["cpu_seconds"] >= 0 for u in units)
    first_ck = [u for u in units if u["label"].startswith("checkpoint-10:")]
    later = [u for u in units if u["label"].startswith(("checkpoint-20:", "checkpoint-30:"))]
    # the first checkpoint computes and stores what it derives from each W; the others read it back
    assert sum(u["base_cache"]["stored"] for u in first_ck) > 0
    assert all(u["base_cache"]["stored"] == 0 and u["base_cache"]["hits"] > 0 for u in later)

    timings = first.timings()  # the same, as the public timings table gives it
    modules = timings[timings.key.str.startswith("module-")]
    by_checkpoint = modules.groupby(modules.label.str.split(": ").str[0])[["cache_hits", "cache_stored"]].sum()
    assert by_checkpoint.loc["checkpoint-10", "cache_stored"] > 0 == by_checkpoint.loc["checkpoint-20", "cache_stored"]
    assert by_checkpoint.loc["checkpoint-30", "cache_hits"] > 0 and (modules.cpu_seconds >= 0).all()

    again = _analyze(inputs, out, "again", base=base)  # another run into the same folder: every entry found
    _assert_same_tables(again, plain)
    assert all(u["base_cache"]["stored"] == 0 and u["base_cache"]["hits"] > 0 for u in _module_units(again))

    # an entry is W's own decomposition: σ equal numpy's SVD of the tensor read with safetensors
    weights = load_file(str(base / "model.safetensors"))
    svds = [read_entry(p, p.parent.name) for p in _entries(out)]
    full = [v for k, v in svds if k == "pure:svd:all"]
    assert full
    sigmas = {tuple(np.round(np.linalg.svd(w.astype(np.float64), compute_uv=False)[:3], 10))
              for w in weights.values() if w.ndim == 2}
    for u, s, v in full:
        assert tuple(np.round(s[:3], 10)) in sigmas
        np.testing.assert_allclose(u.T @ u, np.eye(u.shape[1]), atol=1e-10)

    # W's entanglement profile is an entry too (one per W): its entropies are those of numpy's SVD of vec(W)
    # reshaped at each cut of the prime-factor chain
    profiles = [v for k, v in svds if k.startswith("pure:entanglement_profile:")]
    assert len(profiles) == len(full)
    matrices = [w.astype(np.float64) for w in weights.values() if w.ndim == 2]
    expected = [(_svd_entropies(w), np.linalg.svd(w, compute_uv=False) ** 2) for w in matrices]
    for entropy, renyi2, small in profiles:
        assert renyi2.shape == entropy.shape
        assert any(e.shape == entropy.shape and np.allclose(e, entropy, rtol=1e-10, atol=1e-12) and
                   (small.size == 0 or np.allclose(np.sort(small)[::-1], s2, rtol=1e-9, atol=1e-14))  # W's σ², if kept
                   for e, s2 in expected)


def _svd_entropies(w: np.ndarray) -> np.ndarray:
    """Von Neumann entropy at every cut of vec(w)/‖w‖ on the chain of w's prime factors, from numpy's SVD."""
    return numpy_entropies(w, [p for n in w.shape for p in range(2, n + 1) for _ in range(_multiplicity(n, p))])


def _multiplicity(n: int, p: int) -> int:
    """How often the prime p divides n (0 for a composite p: its primes were divided out first)."""
    if any(p % q == 0 for q in range(2, int(p ** 0.5) + 1)):
        return 0
    m = 0
    while n % p == 0:
        n, m = n // p, m + 1
    return m


def test_w_entanglement_profile_is_read_from_the_cache_not_recomputed(tmp_path, engine_inputs):
    # plant: every stored W profile's entropies shifted by 1, in valid entries; a run that reads them
    # reports W's entropies shifted, ΔW's unchanged, and the other probes' W rows unchanged (the σ² kept
    # with the profile put them on the same path as when it was computed)
    base, ckpt, out = engine_inputs["base"], engine_inputs["adapters"][0], tmp_path / "out"
    written = _analyze(ckpt, out, "writer", base=base)
    planted = 0
    for path in _entries(out):
        key, value = read_entry(path, path.parent.name)
        if key.startswith("pure:entanglement_profile:"):
            write_entry(path, path.parent.name, key, (value[0] + 1.0, *value[1:]))
            planted += 1
    assert planted
    reader = _analyze(ckpt, out, "reader", base=base)
    assert all(u["base_cache"]["stored"] == 0 for u in _module_units(reader))
    before, after = written.table("entanglement"), reader.table("entanglement")
    w0, w1 = before[before.source == "weight"], after[after.source == "weight"]
    assert len(w1) == len(w0) > 0
    np.testing.assert_array_equal(w1.entropy.to_numpy(), w0.entropy.to_numpy() + 1.0)
    np.testing.assert_array_equal(w1.renyi2.to_numpy(), w0.renyi2.to_numpy())
    d0, d1 = before[before.source == "delta"], after[after.source == "delta"]
    np.testing.assert_array_equal(d1.entropy.to_numpy(), d0.entropy.to_numpy())
    for name in ("spectra", "esd", "intruders", "intruder_vectors", "deltas"):
        assert_frame_equal(written.table(name).drop(columns=["run"]), reader.table(name).drop(columns=["run"]),
                           check_exact=True, obj=name)


def test_lanczos_route_of_w_plus_delta_gives_the_same_rows_with_and_without_cache(tmp_path, engine_inputs):
    # few leading vectors of W + ΔW (4 and 8 of the tiny LLaMA's 32): Lanczos on the structured Gram built
    # from W's decomposition, read from disk for the second adapter; the default depths (10, 100 of 32)
    # take the same route's dense solve, which the test above holds
    from lab.kernels import subspaces

    base, adapters = engine_inputs["base"], engine_inputs["adapters"]
    assert 8 <= 32 // subspaces.LOW_RANK_LANCZOS_FRACTION
    options = {"spectra": {"intruder_top": 4}, "intruders": {"ks": (4, 8)}}
    plain = _analyze(adapters, tmp_path / "plain", "r", base=base, base_cache=False, options=options)
    cached = _analyze(adapters, tmp_path / "cached", "r", base=base, options=options)
    _assert_same_tables(cached, plain)
    second = [u for u in _module_units(cached) if u["label"].startswith(adapters[1].name)]
    assert second and all(u["base_cache"]["hits"] > 0 and u["base_cache"]["stored"] == 0 for u in second)
    assert (plain.table("intruders").examined == 8).any()


def _lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=600)


def test_an_entry_written_by_one_process_is_read_by_a_dask_worker(tmp_path, engine_inputs, dask_cluster):
    base, train, out = engine_inputs["base"], engine_inputs["train"], tmp_path / "out"
    done = _lab("analyze", str(train / "checkpoint-10"), "--base", str(base), "--out", str(out), "--run", "writer",
                "--probes", ",".join(PROBES), "--targets", ",".join(TARGETS), "--quiet")
    assert done.returncode == 0, done.stderr
    written = open_run(out / "writer")
    # plant: every stored σ of W doubled, in valid entries; a run that reads them reports W's norms doubled
    planted = 0
    for path in _entries(out):
        key, value = read_entry(path, path.parent.name)
        if key.startswith("pure:sigma:"):
            write_entry(path, path.parent.name, key, 2.0 * value)
            planted += 1
    assert planted
    reader = lab.analyze(train / "checkpoint-10", base=base, out=out, run="reader", probes=PROBES, targets=TARGETS,
                         scheduler=dask_cluster.scheduler_address, progress=False)
    units = _module_units(reader)
    assert units and all(u["worker"].startswith("tcp://127.0.0.1:") and u["base_cache"]["hits"] > 0 for u in units)
    before, after = written.table("spectra"), reader.table("spectra")
    w0, w1 = before[before.source == "weight"], after[after.source == "weight"]
    assert len(w1) == len(w0) > 0
    np.testing.assert_array_equal(w1.spectral_norm.to_numpy(), 2.0 * w0.spectral_norm.to_numpy())
    d0, d1 = before[before.source == "delta"], after[after.source == "delta"]  # ΔW's own σ are never stored
    np.testing.assert_array_equal(d1.spectral_norm.to_numpy(), d0.spectral_norm.to_numpy())


def test_damaged_entries_are_ignored_and_rewritten(tmp_path, engine_inputs):
    base, ckpt = engine_inputs["base"], engine_inputs["adapters"][0]
    plain = _analyze(ckpt, tmp_path / "plain", "r", base=base, base_cache=False)
    out = tmp_path / "out"
    _analyze(ckpt, out, "r", base=base)
    entries = _entries(out)
    assert len(entries) >= 4
    truncated, flipped, garbage, elsewhere = entries[:4]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    data = bytearray(flipped.read_bytes())
    data[-200] ^= 0xFF  # inside the last array's bytes or the zip directory
    flipped.write_bytes(bytes(data))
    garbage.write_bytes(b"not an entry file")
    key, value = read_entry(elsewhere, elsewhere.parent.name)
    write_entry(elsewhere, "another-address", key, value)  # a valid file, but not this address's
    for path in (truncated, flipped, garbage, elsewhere):
        assert read_entry(path, path.parent.name) is None

    rerun = _analyze(ckpt, out, "r", base=base)
    _assert_same_tables(rerun, plain)
    assert sum(u["base_cache"]["rejected"] for u in _module_units(rerun)) == 4
    for path in (truncated, flipped, garbage, elsewhere):  # recomputed and stored again, whole
        assert read_entry(path, path.parent.name) is not None
    assert not list((out / CACHE_DIR).rglob("*.tmp"))


@pytest.mark.parametrize("value", [np.arange(6.0).reshape(2, 3),
                                   (np.asfortranarray(np.arange(12.0).reshape(3, 4)), np.ones(2), np.zeros((0, 4)))])
def test_entry_round_trip_is_exact(tmp_path, value):
    path = tmp_path / "ab" / f"entry{SUFFIX}"
    write_entry(path, "addr", "pure:x", value)
    key, back = read_entry(path, "addr")
    assert key == "pure:x" and type(back) is type(value)
    for a, b in zip(back if isinstance(back, tuple) else [back], value if isinstance(value, tuple) else [value]):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        assert a.flags.f_contiguous == b.flags.f_contiguous and a.flags.c_contiguous == b.flags.c_contiguous
    assert read_entry(path, "other") is None


def test_cli_no_base_cache_writes_no_entries(tmp_path, engine_inputs):
    out = tmp_path / "out"
    done = _lab("analyze", str(engine_inputs["adapters"][0]), "--base", str(engine_inputs["base"]), "--out", str(out),
                "--run", "r", "--probes", "spectra", "--no-base-cache", "--quiet")
    assert done.returncode == 0, done.stderr
    run = open_run(out / "r")
    assert run.complete and run.manifest["base_cache"] is None and not (out / CACHE_DIR).exists()
    assert run.timings().cache_hits.isna().all()
    cached = _lab("analyze", str(engine_inputs["adapters"][0]), "--base", str(engine_inputs["base"]), "--out", str(out),
                  "--run", "c", "--probes", "spectra", "--quiet")
    assert cached.returncode == 0, cached.stderr
    assert open_run(out / "c").manifest["base_cache"] == str((out / CACHE_DIR).resolve()) and _entries(out)
    _assert_same_tables(run, open_run(out / "c"))


def test_address_names_the_file_content_tensor_layout_and_code(tmp_path):
    from lab.checkpoints.safetensors_header import TensorInfo
    from lab.engine.basecache import BaseCache, fingerprint

    f = tmp_path / "model.safetensors"
    info, other = (TensorInfo(key, f, (4, 4), "F32", True) for key in ("w", "v"))
    cache = BaseCache(str(tmp_path / "c"), {str(f.resolve()): "aa"}, fingerprint(None))
    a = cache.address(info)
    variants = {a, cache.address(info, conv1d=True), cache.address(info, rows=(0, 2)), cache.address(other),
                BaseCache(cache.folder, {str(f.resolve()): "bb"}, cache.fingerprint).address(info),  # other content
                BaseCache(cache.folder, cache.digests, cache.fingerprint + ";x").address(info)}  # other code
    assert a == cache.address(info) and len(variants) == 6
    assert BaseCache(cache.folder, {}, cache.fingerprint).address(info) is None  # unknown file: nothing cached
    assert "probes=" in cache.fingerprint
