"""Structured readers for PEFT types whose update has a structure worth keeping (factors, a Kronecker
product, a diagonal scaling): each turns one general-path module read into ΔW without building it
densely where the structure gives the answer faster, and equals PEFT's own update to 1e-6 relative.

A reader is ``read(spec, loader, stream_bytes) -> (matrix, base, note)`` exactly like
:func:`lab.checkpoints.peft_general.read_peft`, which it replaces for its type (its row ``peft:<type>`` in
:data:`lab.checkpoints.formats.FORMATS`): ``spec`` is the
:class:`~lab.checkpoints.records.ModuleRead` the general path planned (its ``peft`` field holds the
module's tensors and the shared ones, already checked against PEFT's skeleton), ``matrix`` is one
representation :class:`lab.deltas.Delta` accepts, in the (out, in) layout. A reader may return a fourth
element, a dict of more :class:`~lab.deltas.Delta` fields (AdaLoRA's ``pruned_ranks``). A reader returns
None for a module it does not handle (LoKr: a layer that is not an ``nn.Linear``; LoHa: a convolution's
CP form); the general path reads that one. A reader module may also define ``rank_bound(spec, rows)``:
the Delta's rank bound from the stored shapes alone (:func:`lab.checkpoints.formats.planned_rank_bound`).
What they share (the module's tensors by PEFT name, its config, the checks) is :mod:`.common`; PEFT's
skeleton, where a reader needs it, is :mod:`lab.checkpoints.peft_skeleton`.

The readers (each file's docstring gives PEFT 0.21's formula it reproduces):

* ``adalora``: factors B·(A ⊙ λ)·lora_alpha/(init_r + 1e-5) of the ranks λ ≠ 0 (rank bound: the kept
  ranks; the pruned ones are the Delta's ``pruned_ranks``),
* ``vera``: factors (λ_b ⊙ B[:out])·(λ_d ⊙ A[:, :in]) of the shared projections (rank ≤ r),
* ``loha``: Khatri–Rao factors of (w1a·w1b) ⊙ (w2a·w2b)·alpha/r (rank ≤ r1·r2), Linear layers,
* ``lokr``: s·kron(W1, W2) (:class:`lab.deltas.Kron`; rank ≤ rank(W1)·rank(W2)), Linear layers,
* ``ia3``: dense W·diag(l − 1) or diag(l − 1)·W from the base weight (full rank bound).

Types without a reader here go through PEFT (the general path); the table of which type has which
reader is :data:`lab.checkpoints.formats.FORMATS`.
"""
