"""Seeded random matrices that show where "no structure" sits for a given shape.

* ``random``: a Gaussian matrix with i.i.d. N(0, 1) entries. Flattened and normalised it is a
  Haar-random state, so its entanglement profile sits on Page's curve and its singular values
  follow Marchenko–Pastur.
* ``random_lora``: scale·B·A with B (rows×r) and A (r×cols) i.i.d. N(0, 1) and scale 1: a LoRA
  update of rank r whose factors were never trained (both factors random, unlike PEFT's
  initialisation B = 0), i.e. what rank r alone does to the profile and the spectrum.

Every matrix is drawn from its own generators seeded by (seed, rows, cols[, r]), so a control does
not depend on which other shapes a run happens to contain, or on their order. The Gaussian matrix
is :class:`lab.sources.GaussianSource` read whole: one generator per chunk of its
row-major elements, so a control too large to hold is streamed block by block and is still the
same matrix, element for element.
"""

from __future__ import annotations

import numpy as np

from lab.kernels.factored import Factors
from lab.sources import GaussianSource

RANDOM = "random"
RANDOM_LORA = "random_lora"


def gaussian_matrix(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A rows×cols float64 matrix of i.i.d. N(0, 1) entries, seeded by (seed, rows, cols).

    Exactly ``GaussianSource(rows, cols, seed)`` read whole (chunked generators, see there).
    """
    return GaussianSource(rows, cols, seed).to_array()


def gaussian_factors(rows: int, cols: int, r: int, seed: int = 0) -> Factors:
    """Factors B (rows×r), A (r×cols) of i.i.d. N(0, 1) entries, scale 1, seeded by (seed, rows, cols, r)."""
    rng = np.random.default_rng([int(seed), int(rows), int(cols), int(r), 1])
    return Factors(rng.standard_normal((int(rows), int(r))), rng.standard_normal((int(r), int(cols))), 1.0)


def control_module(source: str, rows: int, cols: int, r: int | None = None) -> str:
    """The module name a control row carries, e.g. ``random 384x384`` or ``random lora 384x384 r16``."""
    return f"random {rows}x{cols}" if source == RANDOM else f"random lora {rows}x{cols} r{r}"
