"""The engine: a plan of picklable units, run serially or on Dask, stored as durable parts.

``build_plan`` (:mod:`lab.engine.plan`) turns checkpoints and probes into units of three scopes
(:mod:`lab.engine.units`); an executor (:mod:`lab.engine.executors`) runs them with
:func:`lab.engine.execute.run_unit`; the driver, :func:`lab.analyze` (:mod:`lab.engine.analyze`), stores
each finished unit (:mod:`lab.store.parts`) and writes the tables when all are done.
"""

from lab.engine.execute import UnitResult, Work, run_unit
from lab.engine.executors import DaskExecutor, SerialExecutor
from lab.engine.plan import Plan, build_plan
from lab.engine.subjects import GroupSubject, ModelSubject

__all__ = ["DaskExecutor", "GroupSubject", "ModelSubject", "Plan", "SerialExecutor", "UnitResult", "Work",
           "build_plan", "run_unit"]
