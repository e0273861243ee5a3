"""Sites of a matrix seen as a chain of small subsystems: the prime factors of its dimensions.

A rows×cols matrix M becomes the state ψ = vec(M)/‖M‖_F (row-major) on a chain whose site
dimensions are the prime factors of ``rows`` in ascending order followed by those of ``cols``.
A 4096×4096 matrix is 24 qubits; 384×384 is 2⁷·3 | 2⁷·3; a prime dimension is one big site.
The cut after the row sites separates the output index from the input index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def prime_factors(n: int) -> tuple[int, ...]:
    """The prime factors of ``n`` in ascending order with multiplicity (``()`` for 1).

    >>> prime_factors(384)
    (2, 2, 2, 2, 2, 2, 2, 3)
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"prime_factors needs a positive integer, got {n}")
    factors: list[int] = []
    p = 2
    while p * p <= n:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1 if p == 2 else 2  # after 2 only odd candidates can divide
    if n > 1:
        factors.append(n)
    return tuple(factors)


@dataclass(frozen=True)
class Sites:
    """The chain: site dimensions and how many of them belong to the rows."""

    dims: tuple[int, ...]
    row_sites: int

    @property
    def n_sites(self) -> int:
        return len(self.dims)

    @property
    def cuts(self) -> np.ndarray:
        """Cut positions k = 1 … N−1 (k sites on the left)."""
        return np.arange(1, self.n_sites, dtype=np.int64)

    @property
    def d_left(self) -> np.ndarray:
        """D_left(k) = d_1·…·d_k for every cut (int64: up to 2⁶³, far above any weight matrix)."""
        return np.cumprod(np.asarray(self.dims, dtype=np.int64))[:-1] if self.n_sites > 1 else np.zeros(0, np.int64)

    @property
    def d_right(self) -> np.ndarray:
        """D_right(k) = d_{k+1}·…·d_N for every cut."""
        total = int(np.prod(np.asarray(self.dims, dtype=np.int64))) if self.dims else 1
        return total // self.d_left if self.n_sites > 1 else np.zeros(0, np.int64)

    @property
    def valley_cut(self) -> int | None:
        """The row|column cut (= row_sites), or None when it is not an inner cut (1×n, m×1)."""
        return self.row_sites if 0 < self.row_sites < self.n_sites else None

    def label(self) -> str:
        """The chain written as e.g. ``2·2·3|2·2·3`` (rows | cols)."""
        rows = "·".join(map(str, self.dims[: self.row_sites])) or "1"
        cols = "·".join(map(str, self.dims[self.row_sites :])) or "1"
        return f"{rows}|{cols}"


def sites(rows: int, cols: int) -> Sites:
    """The site chain of a rows×cols matrix: prime factors of rows, then of cols, ascending.

    >>> sites(12, 18).dims, sites(12, 18).row_sites
    ((2, 2, 3, 2, 3, 3), 3)
    """
    row_factors = prime_factors(rows)
    return Sites(dims=row_factors + prime_factors(cols), row_sites=len(row_factors))
