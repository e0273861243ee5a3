"""Page's formula against its definition (a harmonic sum) and its large-dimension approximation."""

import math

import numpy as np
import pytest

from lab.kernels.page import page_approximation, page_entropy


def _page_by_sum(d_a: int, d_b: int) -> float:
    d_a, d_b = min(d_a, d_b), max(d_a, d_b)
    return math.fsum(1.0 / k for k in range(d_b + 1, d_a * d_b + 1)) - (d_a - 1) / (2 * d_b)


@pytest.mark.parametrize("d_a, d_b", [(1, 1), (1, 7), (2, 2), (2, 3), (3, 2), (4, 4), (5, 97), (16, 64), (64, 64), (97, 250), (300, 400)])
def test_digamma_form_equals_the_harmonic_sum(d_a, d_b):
    assert page_entropy(d_a, d_b) == pytest.approx(_page_by_sum(d_a, d_b), abs=1e-12)


def test_symmetric_and_vectorised():
    a = np.array([2, 8, 64, 4096])
    b = np.array([4096, 512, 64, 2])
    values = page_entropy(a, b)
    assert values.shape == (4,)
    assert np.allclose(values, [_page_by_sum(x, y) for x, y in zip(a, b)], atol=1e-12)
    assert page_entropy(8, 512) == page_entropy(512, 8)


@pytest.mark.parametrize("d_a, d_b", [(64, 4096), (1024, 4096), (4096, 4096), (2048, 8192)])
def test_page_approximation_for_large_dimensions(d_a, d_b):
    # S = ln d_A − d_A/(2 d_B) + 1/(2 d_A d_B) + O(1/d_B²): the approximation is good to ~1/d_B²
    assert page_entropy(d_a, d_b) == pytest.approx(page_approximation(d_a, d_b), abs=1.0 / d_b**2 + 1.0 / (d_a * d_b))


def test_maximum_and_trivial_factor():
    assert page_entropy(1, 4096) == 0.0
    for d_a, d_b in [(2, 2), (16, 16), (8, 4096)]:
        assert 0 < page_entropy(d_a, d_b) < math.log(min(d_a, d_b))
