"""Sites: prime factors of rows then cols, ascending; cut dimensions multiply back to the shape."""

import math

import numpy as np
import pytest

from lab.kernels.tensorize import prime_factors, sites


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % d for d in range(2, math.isqrt(p) + 1))


@pytest.mark.parametrize("n", [1, 2, 3, 12, 97, 384, 576, 1536, 4096, 11008, 30522, 2 * 3 * 5 * 7 * 11 * 13, 9973 * 2])
def test_prime_factors_multiply_back_and_are_prime_and_sorted(n):
    f = prime_factors(n)
    assert math.prod(f) == n
    assert all(_is_prime(p) for p in f)
    assert list(f) == sorted(f)


@pytest.mark.parametrize("shape", [(4096, 4096), (384, 384), (192, 576), (12, 18), (97, 50), (1, 12), (7, 1), (1, 1)])
def test_sites_rows_then_cols_and_cut_dimensions(shape):
    rows, cols = shape
    st = sites(rows, cols)
    assert st.dims == prime_factors(rows) + prime_factors(cols)
    assert math.prod(st.dims[: st.row_sites]) == rows
    assert len(st.cuts) == max(st.n_sites - 1, 0)
    assert np.all(st.d_left * st.d_right == rows * cols)
    for k, dl in zip(st.cuts, st.d_left):
        assert dl == math.prod(st.dims[:k])


def test_4096_square_is_24_qubits_with_the_valley_in_the_middle():
    st = sites(4096, 4096)
    assert st.dims == (2,) * 24 and st.row_sites == 12 and st.valley_cut == 12


def test_no_valley_for_a_row_or_column_vector():
    assert sites(1, 12).valley_cut is None
    assert sites(12, 1).valley_cut is None
    assert sites(12, 18).label() == "2·2·3|2·3·3"
