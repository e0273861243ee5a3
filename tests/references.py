"""Independent computations the tests hold lab's kernels to (numpy only, none of lab's code)."""

from __future__ import annotations

import numpy as np


def numpy_entropies(m: np.ndarray, dims) -> np.ndarray:
    """Von Neumann entropy (nats) at every cut of the chain ``dims`` from numpy's singular values of the
    reshaped state vec(m)/‖m‖."""
    psi = m.reshape(-1) / np.linalg.norm(m)
    out = []
    for k in range(1, len(dims)):
        left = int(np.prod(dims[:k]))
        p = np.linalg.svd(psi.reshape(left, -1), compute_uv=False) ** 2
        p = p[p > 1e-300]
        out.append(float(-(p * np.log(p)).sum()))
    return np.array(out)
