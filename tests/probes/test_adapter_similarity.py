"""adapter_similarity against numpy on the dense updates: φ from numpy's SVD, angles from scipy, cosine and signs from the entries."""

import numpy as np
import pytest
import scipy.linalg

from lab.deltas import Delta, Factors
from lab.engine.subjects import GroupSubject
from lab.probes import available
from lab.probes.adapter_similarity import (AdapterSimilarityOptions, dims, phi, principal_angles, sign_conflict_rate,
                                           update_cosine)
from lab.probes.registry import ProbeContext


def _pair(seed, shared=0.0):
    rng = np.random.default_rng(seed)
    a = Factors(rng.standard_normal((40, 6)), rng.standard_normal((6, 30)), 0.5)
    b = Factors(rng.standard_normal((40, 4)) + shared * a.B[:, :4], rng.standard_normal((4, 30)) + shared * a.A[:4], 2.0)
    return a, b


def numpy_phi(x, y, side, i, j):
    ux, _, vxt = np.linalg.svd(x)
    uy, _, vyt = np.linalg.svd(y)
    if side == "right":
        ux, uy = vxt.T, vyt.T
    return np.linalg.norm(ux[:, :i].T @ uy[:, :j]) ** 2 / min(i, j)


@pytest.mark.parametrize("shared", [0.0, 1.0])
def test_phi_against_numpy_svd(shared):
    a, b = _pair(1, shared)
    for side in ("left", "right"):
        grid = phi(a, b, side)
        assert set(grid) == {(i, j) for i in (1, 2, 4, 6) for j in (1, 2, 4)}
        for (i, j), v in grid.items():
            assert v == pytest.approx(numpy_phi(a.to_dense(), b.to_dense(), side, i, j), abs=1e-10)
    same = phi(a, a.to_dense(), "left")
    assert all(same[(i, i)] == pytest.approx(1.0) for i in (1, 2, 4, 6))


def test_cosine_factored_equals_dense():
    a, b = _pair(2, 0.7)
    da, db = a.to_dense(), b.to_dense()
    expect = float(np.sum(da * db) / (np.linalg.norm(da) * np.linalg.norm(db)))
    assert update_cosine(a, b) == pytest.approx(expect, rel=1e-10)
    assert update_cosine(a, db) == pytest.approx(expect, rel=1e-10)
    assert update_cosine(da, b) == pytest.approx(expect, rel=1e-10)
    assert np.isnan(update_cosine(a, np.zeros((40, 30))))


def test_principal_angles_against_scipy():
    a, b = _pair(3, 0.5)
    ua = np.linalg.svd(a.to_dense())[0][:, :4]
    ub = np.linalg.svd(b.to_dense())[0][:, :4]
    ref = np.sort(scipy.linalg.subspace_angles(ua, ub))
    np.testing.assert_allclose(np.sort(principal_angles(a, b, "left", 4)), ref, atol=1e-7)


def test_sign_conflicts_in_blocks_equal_the_entries():
    a, b = _pair(4)
    da, db = a.to_dense(), b.to_dense()
    db[db > 3] = 0.0
    nz = (da != 0) & (db != 0)
    expect = float(((np.sign(da) != np.sign(db)) & nz).sum() / nz.sum())
    for block in (1, 7, 1024):
        assert sign_conflict_rate(a, db, block) == pytest.approx(expect, rel=1e-12)


def test_dims_grid():
    assert dims(8, 64) == [1, 2, 4, 8] and dims(6, 64) == [1, 2, 4, 6] and dims(384, 64)[-1] == 64 and dims(1, 64) == [1]


def test_probe_rows_every_pair():
    rng = np.random.default_rng(5)
    f = [Factors(rng.standard_normal((24, 3)), rng.standard_normal((3, 16)), 1.0) for _ in range(3)]
    deltas = [Delta("m", 0, "q", "lora", x) for x in f]
    subject = GroupSubject("m", ["a", "b", "c"], [None, None, None], deltas)
    rows = available()["adapter_similarity"].run(subject, AdapterSimilarityOptions(top_k=2), ProbeContext())
    pairs = rows["adapter_similarity"]
    assert [(r["first"], r["second"]) for r in pairs] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert pairs[0]["cosine"] == pytest.approx(update_cosine(f[0].to_dense(), f[1].to_dense()), rel=1e-10)
    assert pairs[0]["grassmann_left"] == pytest.approx(np.sqrt(np.sum(principal_angles(f[0], f[1], "left", 2) ** 2)))
    assert len(rows["subspace_similarity"]) == 3 * 2 * 9  # 3 pairs × 2 sides × {1, 2, 3}²
