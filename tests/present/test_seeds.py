"""Seed statistics and the separation rule against numpy and hand cases; the profile distance
against a numpy computation on real profiles (lab's entanglement probe on Gaussian and low-rank
matrices, checked against numpy's SVD in tests/probes)."""

import math

import numpy as np
import pandas as pd
import pytest

from lab.present.seeds import Spread, separated, verdict
from lab.present.valleys import profile_distance
from lab.probes.entanglement import entanglement_profile, profile_rows


def test_spread_against_numpy():
    v = [0.3, 1.7, 0.9, 1.1]
    s = Spread.of(v)
    assert s.mean == pytest.approx(np.mean(v)) and s.sd == pytest.approx(np.std(v, ddof=1))
    assert s.values == tuple(v) and s.n == 4
    one = Spread.of([2.0])
    assert one.mean == 2.0 and math.isnan(one.sd) and one.text(1) == "2.0"
    assert Spread.of([float("nan"), 1.0]).values == (1.0,)


@pytest.mark.parametrize("a, b, want", [
    ([1.0, 1.1, 0.9], [2.0, 2.1, 1.9], True),  # disjoint ranges, means 1.0 apart, sds 0.1
    ([1.0, 1.1, 0.9], [1.05, 3.0, 2.0], False),  # ranges overlap
    ([0.0, 1.9, 2.0], [2.1, 2.2, 2.3], False),  # disjoint, but means 0.9 apart < sds 1.13 + 0.1
    ([1.0], [5.0], False),  # one seed: no spread to exceed
])
def test_separation_rule(a, b, want):
    assert separated(a, b) is want and separated(b, a) is want
    assert verdict(a, b, 3) == ("separated" if want else "not separated at 3 seeds")


def _rows(m, module):
    t = pd.DataFrame(profile_rows(entanglement_profile(m), "delta"))
    t["module"] = module
    return t


def test_profile_distance_against_numpy():
    rng = np.random.default_rng(2)
    mats_a = {f"m{i}": rng.standard_normal((96, 4)) @ rng.standard_normal((4, 96)) for i in range(3)}
    mats_b = {f"m{i}": rng.standard_normal((96, 96)) for i in range(3)}
    a = pd.concat([_rows(m, k) for k, m in mats_a.items()])
    b = pd.concat([_rows(m, k) for k, m in mats_b.items()])
    want = np.mean([np.sqrt(np.mean((entanglement_profile(mats_a[k]).entropy - entanglement_profile(mats_b[k]).entropy) ** 2))
                    for k in mats_a])
    assert profile_distance(a, b) == pytest.approx(want, rel=1e-12)
    assert profile_distance(a, a) == 0.0
    control = _rows(rng.standard_normal((96, 96)), "random 96x96")  # one profile: compared with every module
    ref = control.sort_values("cut").entropy.to_numpy()
    want = np.mean([np.sqrt(np.mean((entanglement_profile(mats_a[k]).entropy - ref) ** 2)) for k in mats_a])
    assert profile_distance(a, control) == pytest.approx(want, rel=1e-12)
