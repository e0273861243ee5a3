"""TensorRanges against safetensors' own reader: files written with safetensors.torch.save_file,
every range compared exactly with load_file(...)[key].double(); blocked probes on files against
the in-memory ones; and the memory a streamed Gram costs, measured in a fresh process."""

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from lab.checkpoints.ranges import TensorRanges, data_offsets, read_array
from lab.checkpoints.safetensors_header import read_header
from lab.errors import FormatError, NonFiniteError, ShapeError
from lab.kernels import blocked, schmidt
from lab.sources import DifferenceSource
from lab.kernels.tensorize import sites

DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
          "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


def _save(path: Path, shape=(37, 53), dtype=torch.bfloat16, seed=0) -> Path:
    """A file with the tensor 'w' between two others, and metadata: offsets are not trivial."""
    g = torch.Generator().manual_seed(seed)
    tensors = {
        "a.bias": torch.randn(7, generator=g).to(torch.float32),
        "w": (3 * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype),
        "z.weight": torch.randn(5, 3, generator=g).to(torch.float16),
    }
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def _reference(path: Path, key="w") -> np.ndarray:
    return load_file(str(path))[key].double().numpy()


@pytest.mark.parametrize("name", list(DTYPES))
def test_ranges_equal_safetensors_own_reading_exactly(tmp_path, name):
    path = _save(tmp_path / f"{name}.safetensors", dtype=DTYPES[name], seed=len(name))
    ref = _reference(path)
    src = TensorRanges(read_header(path)["w"])
    assert src.shape == ref.shape and src.dtype == name and src.nbytes == ref.size * 8
    flat = ref.reshape(-1)
    rng = np.random.default_rng(1)
    for length in (1, 10, 53, 100, flat.size):
        starts = np.sort(rng.integers(0, flat.size - length + 1, 12))
        out = src.read(starts, length)
        assert out.dtype == np.float64
        assert np.array_equal(out, np.stack([flat[s : s + length] for s in starts]))
    assert np.array_equal(src.read(np.arange(37) * 53 + 11, 20), ref[:, 11:31])  # a column block
    assert np.array_equal(src.read(np.arange(5, 30) * 53, 53), ref[5:30])  # a row block: one pread
    assert np.array_equal(src.to_array(), ref)
    assert src.finite


def test_adjacent_ranges_are_one_pread(tmp_path, monkeypatch):
    from lab.checkpoints import ranges

    path = _save(tmp_path / "r.safetensors")
    src = TensorRanges.open(path, "w")
    calls = []
    real = ranges._preadv
    monkeypatch.setattr(ranges, "_preadv", lambda fd, buf, at: calls.append(len(buf)) or real(fd, buf, at))
    src.read(np.arange(3, 20) * 53, 53)  # a row block: 17 ranges end to end
    assert calls == [17 * 53 * 2]
    calls.clear()
    src.read(np.array([0, 10, 20, 30, 100]), 10)  # 0-40 adjacent, then a gap
    assert calls == [40 * 2, 10 * 2]


def test_offsets_come_from_the_header_and_name_file_and_tensor(tmp_path):
    path = _save(tmp_path / "m.safetensors")
    offsets = data_offsets(path)
    assert set(offsets) == {"a.bias", "w", "z.weight"}
    raw = path.read_bytes()
    begin, end = offsets["w"]
    assert np.array_equal(np.frombuffer(raw[begin:end], dtype="<u2"),
                          load_file(str(path))["w"].view(torch.int16).numpy().view("<u2").reshape(-1))
    src = TensorRanges.open(path, "w")
    assert str(path) in src.name and "'w'" in src.name
    with pytest.raises(FormatError, match="no tensor 'nope'"):
        TensorRanges.open(path, "nope")
    with pytest.raises(ShapeError, match="a.bias"):
        TensorRanges.open(path, "a.bias")


def test_integer_tensors_are_refused(tmp_path):
    path = tmp_path / "int.safetensors"
    save_file({"q": torch.zeros(4, 4, dtype=torch.int32)}, str(path))
    with pytest.raises(FormatError, match="I32"):
        TensorRanges.open(path, "q")


@pytest.mark.parametrize("name", list(DTYPES))
@pytest.mark.parametrize("shape", [(0,), (7,), (37, 53), (3, 4, 5)])
def test_read_array_equals_safetensors_own_reading_exactly(tmp_path, name, shape):
    """The whole-tensor read the loader uses, for every floating dtype and rank (and an empty tensor)."""
    path = _save(tmp_path / f"{name}.safetensors", shape=shape, dtype=DTYPES[name], seed=len(name))
    header = read_header(path)
    for key in ("w", "a.bias", "z.weight"):
        out = read_array(header[key])
        assert out.dtype == np.float64 and out.shape == header[key].shape
        assert np.array_equal(out, _reference(path, key))


def test_read_array_refuses_what_it_cannot_read_naming_file_and_tensor(tmp_path):
    path = tmp_path / "int.safetensors"
    save_file({"q": torch.zeros(4, 4, dtype=torch.int32)}, str(path))
    with pytest.raises(FormatError, match=r"int\.safetensors: tensor 'q' has dtype I32"):
        read_array(read_header(path)["q"])
    path = _save(tmp_path / "cut.safetensors", shape=(64, 64))
    info = read_header(path)["w"]
    begin, end = data_offsets(path)["w"]
    os.truncate(path, begin + (end - begin) // 2)
    with pytest.raises(FormatError, match=r"cut\.safetensors: tensor 'w'.*truncated"):
        read_array(info)
    _save(path, shape=(64, 64))
    save_file({"other": torch.zeros(2)}, str(path))  # re-saved without the tensor during the run
    with pytest.raises(FormatError, match=r"cut\.safetensors: tensor 'w' is no longer in the file"):
        read_array(info)


def test_a_file_truncated_after_indexing_is_a_format_error_naming_file_and_tensor(tmp_path):
    path = _save(tmp_path / "cut.safetensors", shape=(64, 64))
    ref = _reference(path).reshape(-1)
    src = TensorRanges.open(path, "w")
    begin, end = data_offsets(path)["w"]
    os.truncate(path, begin + (end - begin) // 2)
    assert np.array_equal(src.read([0], 100)[0], ref[:100])  # the part still there reads
    with pytest.raises(FormatError, match=r"cut\.safetensors: tensor 'w'.*truncated"):
        src.read(np.arange(64) * 64, 64)


def test_a_source_holds_no_open_file_and_pickles(tmp_path):
    path = _save(tmp_path / "p.safetensors")
    src = TensorRanges.open(path, "w")
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    block = src.read(np.arange(10) * 53, 53)
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) == fds
    again = pickle.loads(pickle.dumps(src))
    assert np.array_equal(again.read(np.arange(10) * 53, 53), block)


def test_a_difference_of_two_files_equals_the_numpy_difference(tmp_path):
    base = _save(tmp_path / "base.safetensors", shape=(96, 80), seed=1)
    tuned = _save(tmp_path / "tuned.safetensors", shape=(96, 80), seed=2)
    w, w_ft = _reference(base), _reference(tuned)
    delta = DifferenceSource(TensorRanges.open(tuned, "w"), TensorRanges.open(base, "w"))
    assert np.array_equal(delta.to_array(), w_ft - w)
    starts = np.arange(96) * 80 + 3
    assert np.array_equal(delta.read(starts, 40), (w_ft - w)[:, 3:43])
    g = blocked.grams(delta, TensorRanges.open(base, "w"), budget_bytes=8 * 2 * 80 * 10)
    d = w_ft - w
    for got, want in ((g.delta, d.T @ d), (g.base, w.T @ w), (g.cross, d.T @ w)):
        assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_blocked_probes_on_a_file_equal_the_in_memory_ones(tmp_path, dtype):
    path = _save(tmp_path / "e.safetensors", shape=(384, 120), dtype=dtype, seed=3)
    m = _reference(path)
    src = TensorRanges.open(path, "w")
    st = sites(384, 120)
    for p, q in zip(schmidt.schmidt_spectra(m, st), blocked.schmidt_spectra_blocked(src, st, budget_bytes=16 * 1024)):
        p, q = p[p > 0], q[q > 0]
        assert -(q * np.log(q)).sum() == pytest.approx(-(p * np.log(p)).sum(), rel=1e-10)
    s = blocked.spectrum_blocked(src, budget_bytes=16 * 1024)
    assert np.allclose(s.sigma, np.linalg.svd(m, compute_uv=False), rtol=1e-9)
    assert blocked.fro_norm_blocked(src, budget_bytes=4096) == pytest.approx(np.linalg.norm(m), rel=1e-13)


def test_nonfinite_values_in_a_file_raise_when_streamed(tmp_path):
    path = tmp_path / "nan.safetensors"
    w = torch.ones(32, 16, dtype=torch.bfloat16)
    w[30, 2] = float("nan")
    save_file({"w": w}, str(path))
    src = TensorRanges.open(path, "w")
    assert not blocked.all_finite(src, budget_bytes=8 * 64)
    with pytest.raises(NonFiniteError, match=r"nan.safetensors: tensor 'w' holds NaN/inf"):
        blocked.gram_right(TensorRanges.open(path, "w"), 16, budget_bytes=8 * 64)
    # in a difference the message names the tensor that holds them, not the difference
    clean = tmp_path / "clean.safetensors"
    save_file({"w": torch.zeros(32, 16, dtype=torch.bfloat16)}, str(clean))
    delta = DifferenceSource(TensorRanges.open(clean, "w"), TensorRanges.open(path, "w"))
    with pytest.raises(NonFiniteError, match=r"^\S*nan.safetensors: tensor 'w' holds"):
        blocked.fro_norm_blocked(delta)


_MEMORY_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from lab.checkpoints.ranges import TensorRanges
    from lab.kernels import blocked
    from lab.sources import ArraySource

    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024

    path, cols, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # warm up BLAS and the allocator on a small matrix, so their buffers are in the baseline
    blocked.gram_right(ArraySource(np.ones((4096, cols))), cols, budget_bytes=budget)
    before = status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # Linux >= 4.0: the peak (VmHWM) starts again from the current RSS
    g = blocked.gram_right(TensorRanges.open(path, "w"), cols, budget_bytes=budget)
    print(status("VmHWM:") - before, repr(float(np.trace(g))))
""")


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's resettable peak RSS")
def test_streaming_a_large_bf16_gram_keeps_memory_far_below_its_float64_size(tmp_path):
    rows, cols = 200_000, 128
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    path = tmp_path / "big.safetensors"
    save_file({"w": w}, str(path))
    # ‖W‖²_F = tr(WᵀW), from torch in float64 slices (never the whole matrix in float64)
    expected = sum(float((w[i : i + 10_000].double() ** 2).sum()) for i in range(0, rows, 10_000))
    del w
    budget = 8 << 20
    done = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(path), str(cols), str(budget)],
                          capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    growth, trace = done.stdout.split()
    assert float(trace) == pytest.approx(expected, rel=1e-12)
    # one 8 MiB float64 block, its 2 MiB of raw bytes and 4 MiB conversion slices: ~15 MiB. Reading
    # through a memory map would add the whole file (51 MB); float64 at once would be 205 MB
    assert int(growth) < 24 << 20, f"peak RSS grew by {int(growth) / 2**20:.0f} MiB"
