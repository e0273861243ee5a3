"""Reports and dashboards over stored runs: figures shared by both, HTML/PDF reports, and the
``lab report`` / ``lab dashboard`` commands."""


def write_report(*args, **kwargs):
    """The written report files (see :func:`lab.report.write.write_report`)."""
    from lab.report.write import write_report as _write_report

    return _write_report(*args, **kwargs)


__all__ = ["write_report"]
