"""Numbers over seeds: mean ± sd with the per-seed values, and the one rule by which a difference
between two sets of per-seed values is called a finding ("separated") or not.

The rule (:func:`separated`): every value of one set lies beyond every value of the other, *and*
the means differ by more than the two standard deviations together. With three seeds this is a
plain-spoken screen, not a significance test: a pair that passes it is stated as a difference;
one that does not is reported as "not separated at N seeds".

Example::

    >>> s = Spread.of([1.0, 1.2, 1.1])
    >>> s.text(2)
    '1.10 ± 0.10'
    >>> separated([1.0, 1.2, 1.1], [2.0, 2.1, 1.9]), separated([1.0, 1.2], [1.1, 1.3])
    (True, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation (ddof = 1; NaN with one value) and the values themselves."""

    mean: float
    sd: float
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        v = np.asarray([float(x) for x in values if x is not None and not math.isnan(float(x))], dtype=np.float64)
        if v.size == 0:
            return cls(float("nan"), float("nan"), ())
        return cls(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan"), tuple(v.tolist()))

    @property
    def n(self) -> int:
        return len(self.values)

    def text(self, digits: int = 3) -> str:
        """'m ± sd' (just 'm' with one value)."""
        if self.n == 0:
            return "n/a"
        if self.n == 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f}"

    def values_text(self, digits: int = 3) -> str:
        """The per-seed values, '/'-separated in seed order."""
        return " / ".join(f"{x:.{digits}f}" for x in self.values)


def separated(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two sets of per-seed values differ beyond their spread (module docstring's rule).

    False with fewer than two values in either set: one seed shows no spread to exceed.
    """
    sa, sb = Spread.of(a), Spread.of(b)
    if sa.n < 2 or sb.n < 2:
        return False
    disjoint = max(sa.values) < min(sb.values) or max(sb.values) < min(sa.values)
    return bool(disjoint and abs(sa.mean - sb.mean) > sa.sd + sb.sd)


def verdict(a: Sequence[float], b: Sequence[float], n_seeds: int) -> str:
    """'separated' or 'not separated at N seeds'."""
    return "separated" if separated(a, b) else f"not separated at {n_seeds} seeds"
