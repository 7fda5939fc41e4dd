"""training layer: the one training loop (`loop`), batches from feature arrays (`data`) and the
training recipes for original and retrained models (`recipes`)."""

from .data import ArrayData
from .loop import (
    Budget,
    Evaluation,
    TrainConfig,
    TrainResult,
    accuracy,
    compute_embeddings,
    evaluate,
    evaluate_loss,
    fit,
    make_optimizer,
    make_scheduler,
    per_sample_loss,
    predict_logits,
    seed_everything,
    select_device,
)

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
