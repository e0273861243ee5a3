"""Figure functions shared by the dashboard and the report: rows in, a :class:`Chart` out."""

from lab.report.figures.common import Chart

__all__ = ["Chart"]
