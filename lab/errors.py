"""The error hierarchy. The CLI catches ``LabError`` once, prints one line and exits 2;
library callers get the exception itself.

Messages name the file (and tensor) and, where there is one, what to do about it.
"""


class LabError(Exception):
    """A problem with the user's input or options (not a bug in lab)."""


class InputError(LabError):
    """A path is missing, empty, or holds nothing lab can read."""


class FormatError(LabError):
    """A file exists but is malformed: truncated or corrupt safetensors, invalid
    ``adapter_config.json``, a pickle that needs code to load, a missing shard."""


class ShapeError(LabError):
    """Tensors disagree in shape: base vs fine-tuned, adapter factors vs ``r``."""


class MatchError(LabError):
    """A module named by an adapter or fine-tune has no counterpart in the base."""


class NonFiniteError(LabError):
    """A weight holds NaN or inf (allowed only with ``--allow-nonfinite``)."""


class RunExistsError(LabError):
    """The run folder already exists and ``--overwrite`` was not given."""
