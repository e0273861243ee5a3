"""Page's mean entanglement entropy of a random pure state: the "no structure" baseline.

D. N. Page, "Average entropy of a subsystem", Phys. Rev. Lett. 71, 1291 (1993): for a Haar
random state on C^{d_A} ⊗ C^{d_B} with d_A ≤ d_B, the mean von Neumann entropy (nats) of the
smaller subsystem is

    S_page = Σ_{k=d_B+1}^{d_A·d_B} 1/k − (d_A − 1)/(2·d_B)
           = ψ(d_A·d_B + 1) − ψ(d_B + 1) − (d_A − 1)/(2·d_B)      (ψ = digamma)
           ≈ ln d_A − d_A/(2·d_B)                                  (1 ≪ d_A ≤ d_B)

A Gaussian matrix flattened and normalised is such a random state, so it is also the mean
entropy of a Gaussian matrix at every cut.
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma


def page_entropy(d_a, d_b):
    """Page's mean entropy (nats) of a random state of dimensions d_a × d_b (either order).

    Uses the digamma form, exact for all sizes (the harmonic sum has d_A·d_B terms). Accepts
    scalars or arrays (broadcast); returns a float for scalars.

    >>> round(page_entropy(2, 2), 6)  # 1/3 + 1/4 − 1/4
    0.333333
    """
    a = np.asarray(d_a, dtype=np.float64)
    b = np.asarray(d_b, dtype=np.float64)
    if np.any(a < 1) or np.any(b < 1):
        raise ValueError("page_entropy needs dimensions ≥ 1")
    small, large = np.minimum(a, b), np.maximum(a, b)
    value = digamma(small * large + 1.0) - digamma(large + 1.0) - (small - 1.0) / (2.0 * large)
    value = np.where(small == 1, 0.0, value)  # a product with a 1-dim factor has no entanglement
    return float(value) if value.ndim == 0 else value


def page_approximation(d_a, d_b):
    """Page's large-dimension form ln d_A − d_A/(2 d_B) with d_A ≤ d_B (nats)."""
    a = np.asarray(d_a, dtype=np.float64)
    b = np.asarray(d_b, dtype=np.float64)
    small, large = np.minimum(a, b), np.maximum(a, b)
    value = np.log(small) - small / (2.0 * large)
    return float(value) if value.ndim == 0 else value
