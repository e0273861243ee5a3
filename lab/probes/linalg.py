"""The two dense kernels the Schmidt spectra need: a float64 Gram matrix and symmetric eigenvalues.

Measured on this project's 2-core AMD EPYC machine (bench/RESULTS.md), for the 4096×4096
Gram matrix of a 4096×4096 float64 matrix, one thread:

* Gram: numpy's ``x @ x.T`` goes to OpenBLAS ``dsyrk`` (half the flops of a general product),
  about 1.8 s, against 2.9 s for torch's general ``matmul``;
* eigenvalues only: torch's ``linalg.eigvalsh`` (MKL ``dsyevd`` in the CPU wheels) about 4 s,
  against 6–8 s for numpy's and scipy's OpenBLAS ``?syevd``/``?syevr``.

So the Gram comes from numpy and the eigenvalues from torch (a dependency of lab anyway).
Everything is float64; the arrays are shared with torch without copies.
"""

from __future__ import annotations

import numpy as np
import torch


def gram(x: np.ndarray) -> np.ndarray:
    """x·xᵀ or xᵀ·x, whichever is smaller, in float64 (numpy hands x @ x.T to BLAS ?syrk)."""
    x = np.asarray(x, dtype=np.float64)
    return x @ x.T if x.shape[0] <= x.shape[1] else x.T @ x


def psd_eigvals(g: np.ndarray) -> np.ndarray:
    """Eigenvalues (ascending) of a symmetric positive semi-definite float64 matrix, negatives
    from rounding clipped to 0. Only the lower triangle is read."""
    if g.shape[0] == 0:
        return np.zeros(0)
    w = torch.linalg.eigvalsh(torch.from_numpy(np.asarray(g, dtype=np.float64))).numpy()
    return np.clip(w, 0.0, None)
