"""The valley's shape columns (neighbour depth, half-depth width, deepest cut, outer Page ratio)
against a direct numpy computation: entropies from numpy's SVD of each cut's reshape, and the
shape numbers spelled out again on those arrays with run detection by itertools.groupby."""

import itertools
import math

import numpy as np
import pytest

from lab.probes.entanglement import Profile, entanglement_profile, summarize, summary_row, valley_shape
from lab.kernels.factored import Factors
from lab.kernels.page import page_entropy
from lab.kernels.tensorize import sites
from references import numpy_entropies


def expected_shape(entropy: np.ndarray, page: np.ndarray, v: int) -> dict:
    """The shape numbers written out independently of lab's code (v is 1-based)."""
    depth = page - entropy
    d = depth[v - 1]
    neighbours = [entropy[j] for j in (v - 2, v) if 0 <= j < len(entropy)]
    width = 0
    if d > 0:
        start = 0
        for below, run in itertools.groupby(depth >= d / 2):
            n = len(list(run))
            if below and start <= v - 1 < start + n:
                width = n
            start += n
    others = [e / p for k, (e, p) in enumerate(zip(entropy, page), start=1) if k != v and p > 0]
    return {"neighbour_depth": float(np.mean(neighbours)) - entropy[v - 1], "width": width,
            "deepest_cut": int(np.argmax(depth)) + 1, "page_ratio_outer": float(np.mean(others))}


def synthetic(entropy, rows=12, cols=18) -> Profile:
    """A profile with the given entropies on the chain of rows×cols (2·2·3 | 2·3·3), Page's values real."""
    st = sites(rows, cols)
    dl, dr = st.d_left, st.d_right
    entropy = np.asarray(entropy, dtype=np.float64)
    return Profile(rows, cols, st, dl, dr, entropy, entropy.copy(), np.log(np.minimum(dl, dr).astype(np.float64)),
                   np.asarray(page_entropy(dl, dr), dtype=np.float64))


@pytest.mark.parametrize("make", [
    lambda rng: rng.standard_normal((384, 4)) @ rng.standard_normal((4, 384)),  # a rank-4 update: deep narrow valley
    lambda rng: rng.standard_normal((384, 384)),  # Gaussian: no valley
    lambda rng: rng.standard_normal((384, 24)) @ rng.standard_normal((24, 384)) + 0.05 * rng.standard_normal((384, 384)),
    lambda rng: rng.standard_normal((60, 2)) @ rng.standard_normal((2, 90)),  # uneven chain 2·2·3·5 | 2·3·3·5
])
def test_shape_of_real_matrices_against_numpy(make):
    m = make(np.random.default_rng(7))
    p = entanglement_profile(m)
    st = p.sites
    entropy = numpy_entropies(m, st.dims)
    np.testing.assert_allclose(p.entropy, entropy, atol=1e-9)
    want = expected_shape(entropy, p.page_entropy, st.valley_cut)
    got = valley_shape(p)
    assert got.neighbour_depth == pytest.approx(want["neighbour_depth"], abs=1e-9)
    assert got.width == want["width"]
    assert got.deepest_cut == want["deepest_cut"]
    assert got.page_ratio_outer == pytest.approx(want["page_ratio_outer"], rel=1e-12)


def test_rank_four_valley_is_at_the_row_column_cut_and_gaussian_has_none():
    rng = np.random.default_rng(3)
    low = valley_shape(entanglement_profile(Factors(rng.standard_normal((384, 4)), rng.standard_normal((4, 384)), 1.0)))
    assert low.deepest_cut == 8 and low.width >= 1 and low.neighbour_depth > 0.5
    gauss = entanglement_profile(rng.standard_normal((384, 384)))
    g = valley_shape(gauss)
    # a random state sits on Page's curve: its "valley" is noise, far shallower than the rank-4 one
    assert abs(g.neighbour_depth - (np.mean(gauss.entropy[[6, 8]]) - gauss.entropy[7])) < 1e-12
    assert abs(gauss.page_entropy[7] - gauss.entropy[7]) < 0.01


def test_hand_made_profiles():
    page = synthetic(np.zeros(5)).page_entropy
    # chain 2·2·3 | 2·3·3: cuts 1…5, valley at cut 3
    wide = page - np.array([0.1, 0.9, 1.0, 0.6, 0.4])  # depths 0.1, 0.9, 1.0, 0.6, 0.4: half = 0.5
    s = valley_shape(synthetic(wide))
    want = expected_shape(wide, page, 3)
    assert s.width == want["width"] == 3  # cuts 2, 3, 4
    assert s.deepest_cut == want["deepest_cut"] == 3
    assert s.neighbour_depth == pytest.approx(want["neighbour_depth"])
    assert s.neighbour_depth == pytest.approx((wide[1] + wide[3]) / 2 - wide[2])
    off = page - np.array([0.0, 2.0, 1.0, 0.0, 0.0])  # deepest at cut 2, not at the valley cut
    s = valley_shape(synthetic(off))
    assert (s.deepest_cut, s.width) == (2, 2)
    above = page + 0.1  # entropy above Page everywhere: no dip, width 0
    assert valley_shape(synthetic(above)).width == 0
    ratio = [above[k] / page[k] for k in (0, 1, 3, 4)]
    assert valley_shape(synthetic(above)).page_ratio_outer == pytest.approx(sum(ratio) / 4)


def test_page_ratio_mean_keeps_every_cut_and_outer_drops_the_valley():
    rng = np.random.default_rng(5)
    p = entanglement_profile(Factors(rng.standard_normal((384, 8)), rng.standard_normal((8, 384)), 1.0))
    s = summarize(p, 8)
    ratio = p.entropy / p.page_entropy
    assert s.page_ratio_mean == pytest.approx(ratio.mean())
    assert s.page_ratio_outer == pytest.approx(np.delete(ratio, 7).mean())
    assert s.page_ratio_outer > s.page_ratio_mean  # the valley cut pulls the all-cut mean down
    row = summary_row(p, s, "delta")
    assert {row[k] for k in ("valley_width", "deepest_cut")} <= {int(v) for v in range(0, 16)}
    assert row["valley_neighbour_depth"] == s.valley_neighbour_depth


def test_undefined_shapes():
    flat = valley_shape(entanglement_profile(np.random.default_rng(0).standard_normal((1, 12))))
    assert (flat.neighbour_depth, flat.width, flat.deepest_cut) == (None, None, None)
    nan = valley_shape(synthetic(np.full(5, np.nan)))
    assert (nan.neighbour_depth, nan.width, nan.deepest_cut) == (None, None, None)
    assert math.isnan(nan.page_ratio_outer)
