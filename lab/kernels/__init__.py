"""Kernels: the array functions below the probes.

A kernel takes plain numbers and arrays (a dense matrix, :class:`~lab.deltas.Factors`,
:class:`~lab.deltas.Kron`, a streamed :class:`~lab.sources.MatrixSource`) and returns plain results
(arrays, numbers, small frozen dataclasses such as :class:`~lab.kernels.spectrum.Spectrum`); it
knows no probe options, rows, tables, files or registry. Nothing is registered on import, so
importing a kernel is cheap and has no side effects.

The probes (:mod:`lab.probes`), merging (:mod:`lab.merge`), squeezing (:mod:`lab.squeeze`), the
fine-tuned MPS layout (:mod:`lab.finetune`) and the engine import them; they import nothing of
those.
"""
