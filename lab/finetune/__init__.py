"""Fine-tuning packaged models on a local corpus, saving checkpoints in the standard formats."""

from lab.finetune.config import FinetuneConfig


def __getattr__(name: str):
    # the training loop imports torch: load it only when it is used, not for `lab --help`
    if name in ("finetune", "is_complete"):
        from lab.finetune import train

        return getattr(train, name)
    raise AttributeError(name)


__all__ = ["FinetuneConfig", "finetune", "is_complete"]
