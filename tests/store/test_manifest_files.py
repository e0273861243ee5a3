"""Input files in the manifest: sizes and sha256 as hashlib computes them, in the order given, whether the
files are hashed one by one or side by side."""

import hashlib

import numpy as np

from lab.store.manifest import describe_file, describe_files, sha256


def _files(tmp_path):
    rng = np.random.default_rng(3)
    sizes = [0, 1, (1 << 22) - 1, 1 << 22, (1 << 22) + 5, 3 * (1 << 20) + 7, 9 * (1 << 20)]  # around the 4 MiB chunk
    paths = []
    for i, size in enumerate(sizes):
        p = tmp_path / f"f{i}.bin"
        p.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        paths.append(p)
    return paths


def test_sha256_equals_hashlib_on_whole_bytes(tmp_path):
    for p in _files(tmp_path):
        assert sha256(p) == hashlib.sha256(p.read_bytes()).hexdigest()
        assert sha256(p, chunk=1000) == hashlib.sha256(p.read_bytes()).hexdigest()


def test_describe_files_keeps_order_and_equals_one_by_one(tmp_path):
    paths = _files(tmp_path)
    shuffled = [paths[i] for i in (4, 0, 6, 2, 5, 1, 3)]  # not sorted by size, as a run's files are not
    described = describe_files(shuffled)
    assert described == [describe_file(p) for p in shuffled]
    assert [d["size"] for d in described] == [p.stat().st_size for p in shuffled]
    assert [d["sha256"] for d in described] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in shuffled]
    assert describe_files([]) == [] and describe_files(paths[:1]) == [describe_file(paths[0])]
