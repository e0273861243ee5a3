"""Merging LoRA adapters with exact error accounting: ``lab merge`` (stack, linear, svd, lego).

:mod:`lab.probes.merging` holds the pure factor algebra (no files, shared with the msu_pairs probe); :mod:`lab.merge.adapters`
reads adapters and writes the merged PEFT adapter; :mod:`lab.merge.cli` is the command.
"""
