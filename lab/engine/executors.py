"""Executors: run a plan's units serially in this process, or on a Dask distributed cluster.

Both yield :class:`~lab.engine.execute.UnitResult` as units finish; the driver writes them. With
Dask, ``workers=N`` starts a ``LocalCluster`` of N single-threaded worker processes on this
machine, ``scheduler="tcp://host:8786"`` uses an existing cluster. Either way:

* units travel, not arrays: a worker opens the checkpoint files by path, so every worker must see
  the inputs at the same path (a shared filesystem); a worker that cannot is a one-line error
  naming the worker and the path;
* BLAS and torch run one thread per task on a worker (a worker with N threads runs N tasks at
  once), so workers never oversubscribe the cores; the serial executor leaves the process's
  threads as they are;
* probes registered from user code reach the workers: the probe objects travel with the work,
  pickled by value when their module is not part of lab;
* a worker that dies mid-run (killed, out of memory) has its units rerun elsewhere by Dask's
  scheduler; the rows stay complete because only finished units are stored.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterator

from lab.engine.execute import UnitResult, Work, run_prepare, run_unit, run_unit_encoded
from lab.engine.units import ModelUnit, PairUnit, PrepareUnit
from lab.errors import LabError

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                    "NUMEXPR_NUM_THREADS")


class SerialExecutor:
    """Runs units one after the other in this process; base preparations once, when first needed."""

    name = "serial"

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def run(self, units: list[Any], work: Work, prepare: list[PrepareUnit]) -> Iterator[UnitResult]:
        by_key = {p.key: p for p in prepare}
        prepared: dict[str, Any] = {}
        for unit in units:
            inputs = None
            if isinstance(unit, (ModelUnit, PairUnit)):
                for key in unit.prepared:
                    if key not in prepared:
                        prepared[key] = run_prepare(by_key[key], work)
                inputs = {by_key[k].probe: prepared[k] for k in unit.prepared}
            yield run_unit(unit, work, inputs)


class DaskExecutor:
    """Runs units on a Dask cluster: a new local one (``workers``) or an existing one (``scheduler``)."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None) -> None:
        if (workers is None) == (scheduler is None):
            raise ValueError("give either workers or scheduler")
        if workers is not None and workers < 1:
            raise LabError(f"--workers {workers}: need at least one worker")
        self.workers, self.scheduler = workers, scheduler
        self.name = f"dask: {workers} local workers" if workers else f"dask: {scheduler}"
        self._cluster = self._client = None
        self._starting: ThreadPoolExecutor | None = None
        self._connected: Future | None = None
        self._closed: Future | None = None

    def start(self) -> None:
        """Begin connecting in the background: a local cluster's worker processes start and import lab
        while the driver reads and plans the inputs (``__enter__`` waits for it)."""
        if self._starting is None:
            self._starting = ThreadPoolExecutor(1, thread_name_prefix="lab-dask-start")
            self._connected = self._starting.submit(self._connect)

    def _connect(self) -> None:
        from distributed import Client

        try:
            if self.workers is not None:
                self._cluster = local_cluster(self.workers)
                self._client = Client(self._cluster)
                self._client.run(_warm_up)  # the imports every unit needs, done before the first one arrives
            else:
                self._client = Client(self.scheduler, timeout="10s")
        except OSError as e:
            raise LabError(f"--scheduler {self.scheduler}: cannot reach the Dask scheduler ({e})") from None

    def __enter__(self) -> DaskExecutor:
        self.start()
        try:
            self._connected.result()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        """Begin closing in the background: the driver writes the tables meanwhile (``close`` waits)."""
        if self._starting is not None and self._closed is None:
            self._closed = self._starting.submit(self._disconnect)

    def close(self) -> None:
        """Close the client and a local cluster, waiting for a start or a close still under way."""
        if self._starting is not None:
            self.__exit__()  # begins the close unless it has begun
            self._starting.shutdown(wait=True)
            self._starting = None
            self._closed.result()

    def _disconnect(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None

    def run(self, units: list[Any], work: Work, prepare: list[PrepareUnit]) -> Iterator[UnitResult]:
        from distributed import as_completed

        client = self._client
        threaded = dataclasses.replace(work, threads=1)
        [work_future] = client.scatter([_ship_user_probes(threaded)], broadcast=True, hash=False)
        needed = {k for u in units if isinstance(u, (ModelUnit, PairUnit)) for k in u.prepared}
        prepared = {p.key: client.submit(run_prepare, p, work_future, pure=False) for p in prepare if p.key in needed}
        probe_of = {p.key: p.probe for p in prepare}
        futures = []
        for unit in units:
            inputs = {probe_of[k]: prepared[k] for k in unit.prepared} if isinstance(unit, (ModelUnit, PairUnit)) else None
            futures.append(client.submit(run_unit_encoded, unit, work_future, inputs, pure=False, retries=1))
        done = as_completed(futures)
        try:
            for future in done:
                yield future.result()
        finally:
            for future in futures:  # an error or an interrupt: stop the rest
                future.cancel()


def local_cluster(workers: int):
    """A ``LocalCluster`` of ``workers`` single-threaded worker processes on 127.0.0.1, as ``--workers``
    starts it: BLAS/OpenMP/MKL pools of one thread in each (set in their environment, so torch also
    starts with one), no dashboard, nothing listening beyond loopback, and glibc's own malloc settings.

    Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` in its workers, so that freed memory goes back to
    the system at once. A unit allocates and frees arrays of megabytes all the time; with that setting
    each one is handed back and faulted in (and zeroed) again. On the MiniLM sweep, that was 22 of a worker's
    97 CPU seconds, spent in the kernel (bench/RESULTS.md). A serial run never had the setting, so the
    workers now allocate as a serial run does.
    """
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                            dashboard_address=None, silence_logs=logging.ERROR, env={v: "1" for v in THREAD_VARIABLES},
                            # no dashboard, but the scheduler's HTTP server (health routes) still starts: on a free
                            # loopback port, not on 8787, where a second cluster would warn that the port is taken
                            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})


def _warm_up() -> None:
    """Run on each new local worker: import the engine, the readers, the probes and threadpoolctl
    (a second or two, once per worker, while the driver plans; otherwise each worker's first unit
    pays them). Not torch: safetensors inputs are read without it, and it takes seconds to import."""
    import threadpoolctl  # noqa: F401

    import lab.checkpoints.formats  # noqa: F401
    import lab.engine.execute  # noqa: F401
    import lab.probes  # noqa: F401


def _ship_user_probes(work: Work):
    """``work`` as it must travel: probes defined outside lab (a ``--plugin`` file, a notebook, test code)
    pickled by value, so workers need not import their modules.

    Registering the modules with cloudpickle is not enough alone: Dask pickles an object with the plain
    ``pickle`` first and only falls back to cloudpickle when that fails or the object's own module is
    registered. A ``Work`` pickles fine by reference, and a worker then cannot import ``lab_plugin_...``.
    So the work travels as cloudpickle's bytes, unpickled on the worker into the same ``Work``."""
    import cloudpickle

    user = []
    for probe in work.probes:
        for fn in (probe.run, probe.prepare, probe.options):
            module = getattr(fn, "__module__", None)
            if module and module != "__main__" and not module.startswith("lab.") and module in sys.modules:
                cloudpickle.register_pickle_by_value(sys.modules[module])
                user.append(module)
    return _ByValue(cloudpickle.dumps(work)) if user else work


class _ByValue:
    """Pickles as ``cloudpickle.loads(payload)``: unpickling yields the object itself, not this wrapper."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __reduce__(self):
        import cloudpickle

        return cloudpickle.loads, (self.payload,)
