"""The cores this process may run on: what sizes its thread and process pools (report workers, demo jobs, the
threads that hash a run's inputs)."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the platform says, else the CPU count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
