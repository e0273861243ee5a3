"""Reports of stored runs as self-contained HTML and searchable PDF, and the ``lab report`` command.

What a report shows (figures, frames, theory, provenance) comes from ``lab.present``, which the
dashboards share; here it is gathered (``content``; each family's section through ``page``) and laid out (``html``, ``pdf``,
``markdown``).
"""


def write_report(*args, **kwargs):
    """The written report files (see :func:`lab.report.write.write_report`)."""
    from lab.report.write import write_report as _write_report

    return _write_report(*args, **kwargs)


__all__ = ["write_report"]
