"""Reading checkpoints: format detection, tensor indexes, lazy loading, module naming, pairing.

Public interface (used by ``lab.analyze``):

* ``discover(path) -> list[Checkpoint]``: one checkpoint, or a time series for a training output
  with ``checkpoint-N/`` folders (sorted by step). Validates cheaply up front (configs, headers,
  factor shapes against ``r``) so that bad input fails before any work is done.
* ``iter_deltas(ckpt, base=None, *, modules=None, allow_nonfinite=False) -> Iterator[Delta]``:
  the module updates of one checkpoint, read one tensor (pair) at a time.
"""
