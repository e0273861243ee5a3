"""Fine-tuning packaged models on a local corpus, saving checkpoints in the standard formats."""

from lab.finetune.train import FinetuneConfig, finetune, is_complete

__all__ = ["FinetuneConfig", "finetune", "is_complete"]
