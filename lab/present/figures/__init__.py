"""Figure functions shared by the dashboard and the report: rows in, a :class:`Chart` out.

One module per table family (``updates`` for the deltas table, ``entanglement``, ``spectra``,
``attention``, ``thresholds``, ``msu`` for the unit, pair and merge tables) and ``common`` for what
every figure shares.
"""

from lab.present.figures.common import Chart

__all__ = ["Chart"]
