"""LoRA-Squeeze ("Simple and Effective Post-Tuning and In-Tuning Compression of LoRA Modules", Vulić
et al., arXiv 2602.10993): train at a higher rank, then compress each module's update to a lower rank
with an SVD. The paper's three variants and where they live: Post-Squeeze (the SVD of the trained
update: ``lab squeeze``), Cont-Squeeze (Post-Squeeze, then a few steps at the target rank at the
source's scale: ``lab squeeze --steps``, :mod:`lab.squeeze.retrain`) and In-Squeeze (the rank
annealed during training: ``lab finetune --squeeze-to``, :mod:`lab.finetune.insqueeze`).

``svd`` (the arithmetic: exact SVD from factors, energy ranks, seeded randomized SVD), ``targets``
(what each input module's update is: PEFT LoRA or MPS factors, or a full fine-tune's dense ΔW),
``write`` (the PEFT adapter and the ``squeeze`` table), ``retrain`` (Cont-Squeeze, ``--steps``), ``cli``.
"""
