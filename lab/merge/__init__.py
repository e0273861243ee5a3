"""Merging LoRA adapters (and full fine-tunes) with exact error accounting: ``lab merge`` (stack, linear, svd, lego,
and the task-vector methods task_arithmetic, ties, dare_linear, dare_ties, magnitude_prune).

:mod:`lab.kernels.merging` holds the pure factor algebra (no files, shared with the msu_pairs probe) and
:mod:`lab.kernels.task_vectors` the dense task-vector methods; :mod:`lab.merge.full` merges full fine-tunes; :mod:`lab.merge.adapters`
reads adapters and writes the merged PEFT adapter; :mod:`lab.merge.cli` is the command.
"""
