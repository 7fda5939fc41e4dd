"""models layer: the model registry, the architectures and safe checkpoints.

Importing this package registers every architecture in `MODELS` (timm style: each module's
factories register themselves on import).
"""

from . import hf_classifier, plain, small, transformer  # noqa: F401  (register the architectures)
from .base import SpeechClassifier
from .checkpoint import CheckpointError, checkpoint_sha256, load_checkpoint, save_checkpoint
from .registry import (
    MODEL_INFO,
    MODELS,
    ModelInfo,
    cpu_testable_names,
    create_model,
    describe_model_options,
    model_info,
    model_names,
    real_size_names,
    rebuild_model,
)

__all__ = [
    "CheckpointError",
    "checkpoint_sha256",
    "load_checkpoint",
    "save_checkpoint",
    "MODELS",
    "MODEL_INFO",
    "ModelInfo",
    "SpeechClassifier",
    "cpu_testable_names",
    "create_model",
    "describe_model_options",
    "model_info",
    "model_names",
    "real_size_names",
    "rebuild_model",
]
