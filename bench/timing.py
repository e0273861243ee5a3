"""Timing helpers for the benchmarks: wall-clock seconds of repeated calls, interleaved."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved(tasks: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict]:
    """Run every task once per round, ``repeats`` rounds, and report min/median seconds per task.

    Interleaving puts the tasks under the same background load (this is a shared machine), and
    the minimum is the least disturbed run; both are reported.
    """
    times: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, task in tasks.items():
            t0 = time.perf_counter()
            task()
            times[name].append(time.perf_counter() - t0)
    return {name: {"min_s": min(ts), "median_s": statistics.median(ts), "runs_s": ts} for name, ts in times.items()}
