"""lab: what fine-tuning did to the weights, measured and held against theory."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("lab")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"


def analyze(*args, **kwargs):
    """Analyse checkpoints and return the stored run (see :func:`lab.engine.analyze.analyze`)."""
    from lab.engine.analyze import analyze as _analyze

    return _analyze(*args, **kwargs)


__all__ = ["__version__", "analyze"]
