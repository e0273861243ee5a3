"""Probes: pure functions from a Delta to tidy rows. Importing this package registers them."""

from lab.probes import inventory  # noqa: F401  (the deltas table)
from lab.probes import entanglement, spectra  # noqa: F401
from lab.probes import attention, thresholds  # noqa: F401  (model scope: they run the models on text)
from lab.probes import msu, msu_pairs  # noqa: F401  (minimal semantic units, single and group scope)
from lab.probes import no_hair  # noqa: F401  (pair scope: two fine-tunes of one base run on text)
from lab.probes import forgetting  # noqa: F401  (model scope: KL and hidden-state distances from the base)
from lab.probes import esd  # noqa: F401  (WeightWatcher's heavy-tailed metrics of W, W + ΔW and ΔW)
from lab.probes import intruders  # noqa: F401  (intruder dimensions over ε × k, both sides)
from lab.probes import adapter_similarity  # noqa: F401  (group scope: the geometry between adapters' updates)
from lab.probes.registry import Probe, ProbeContext, available, register, resolve

__all__ = ["Probe", "ProbeContext", "available", "register", "resolve"]
