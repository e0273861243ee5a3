"""LoRA-Squeeze ("Simple and Effective Post-Tuning and In-Tuning Compression of LoRA Modules"):
train at a higher rank, then compress each module's update to a lower rank with an SVD, optionally
followed by a few steps at the target rank.

``svd`` (the arithmetic: exact SVD from factors, energy ranks, seeded randomized SVD), ``targets``
(what each input module's update is: PEFT LoRA or MPS factors, or a full fine-tune's dense ΔW),
``write`` (the PEFT adapter and the ``squeeze`` table), ``retrain`` (``--steps``), ``cli``.
"""
