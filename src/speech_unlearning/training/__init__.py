"""training layer: batches from feature arrays (`data`), what `fit` is told and reports (`config`),
optimisers and schedules (`optim`), seeding, devices and budgets (`runtime`), batched evaluation
(`inference`), the shared optimisation step (`steps`), the training loop `fit` (`trainer`),
augmentation (`augment`) and the training recipes for original and retrained models (`recipes`)."""

from .config import TrainConfig, TrainResult
from .data import ArrayData
from .inference import (
    Evaluation,
    accuracy,
    compute_embeddings,
    evaluate,
    evaluate_loss,
    per_sample_loss,
    predict_logits,
)
from .optim import make_optimizer, make_scheduler
from .runtime import Budget, seed_everything, select_device
from .trainer import fit

__all__ = [
    "ArrayData",
    "Budget",
    "Evaluation",
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "compute_embeddings",
    "evaluate",
    "evaluate_loss",
    "fit",
    "make_optimizer",
    "make_scheduler",
    "per_sample_loss",
    "predict_logits",
    "seed_everything",
    "select_device",
]
