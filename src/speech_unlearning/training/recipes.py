"""Training recipes: documented defaults per model family, and the original-model training run.

`train_original` is how every "original" model θo is made, and also Retrain (the gold-standard
baseline): the same recipe on `train_indices = Dr`. The CLI `train` command and the benchmark
call it; `checkpoint_metadata` builds what the checkpoint layer stores next to the weights, so a
later command can reload the same corpus, features and labels.

Defaults (`default_train_config`):
- small CPU models (`cnn`, `tdnn` families: kws-resnet, sid-xvector), trained from scratch:
  AdamW, peak lr 3e-3 with a 3 % warm-up and cosine decay to 0, batch 32, label smoothing 0.05,
  weight decay 1e-4, the best validation epoch kept. Sized for small corpora on two CPU cores:
  5 epochs for kws-resnet and 4 for sid-xvector reach >= 97 % test accuracy on FSDD (digits and
  speakers; benchmarks/bench_training.py), whereas longer schedules cost minutes per epoch there.
  On Speech Commands or VoxCeleb1 train longer (`--set epochs=30`; patience 3 then stops the run
  once neither validation accuracy nor validation loss has improved for 3 epochs).
- transformer backbones (`whisper`, `wav2vec2`, `hubert`): the recipe of transformers'
  audio-classification example on SUPERB KS: AdamW, lr 3e-5 (5e-5 for speaker ID, which has many
  more classes to fit), 10 % linear warm-up then linear decay, 5 epochs, batch 32, gradient
  norm clipped at 1, no weight decay. Check per-class accuracy: that recipe can collapse to the
  majority class on KWS.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..config import to_dict
from ..data.corpus import Corpus, CorpusError
from ..data.features import FeatureSpec, feature_spec_for, load_features
from ..models.base import SpeechClassifier
from ..models.registry import create_model, model_info
from .data import ArrayData
from .loop import TrainConfig, TrainResult, accuracy, fit, seed_everything

DEFAULT_MODELS: dict[str, str] = {"kws": "kws-resnet", "sid": "sid-xvector"}

SMALL_MODEL_RECIPE = TrainConfig(
    epochs=5,
    batch_size=32,
    lr=3e-3,
    weight_decay=1e-4,
    optimizer="adamw",
    patience=3,
    schedule="cosine",
    warmup_ratio=0.03,
    label_smoothing=0.05,
    threads=1,
)

TRANSFORMER_RECIPE = TrainConfig(
    epochs=5,
    batch_size=32,
    lr=3e-5,
    weight_decay=0.0,
    optimizer="adamw",
    patience=0,
    schedule="linear",
    warmup_ratio=0.1,
    max_grad_norm=1.0,
    eval_batch_size=64,
)

# Per-family recipes, then per-(family, task) adjustments.
FAMILY_RECIPES: dict[str, TrainConfig] = {
    "cnn": SMALL_MODEL_RECIPE,
    # Six FSDD speakers are told apart after one epoch; the fourth only anneals the weights.
    "tdnn": dataclasses.replace(SMALL_MODEL_RECIPE, epochs=4),
    "whisper": TRANSFORMER_RECIPE,
    "wav2vec2": TRANSFORMER_RECIPE,
    "hubert": TRANSFORMER_RECIPE,
}
TASK_ADJUSTMENTS: dict[tuple[str, str], dict[str, Any]] = {
    ("whisper", "sid"): {"lr": 5e-5},
    ("wav2vec2", "sid"): {"lr": 5e-5},
    ("hubert", "sid"): {"lr": 5e-5},
}


def default_model_for(task: str) -> str:
    """The small CPU model used for `task` when none is named: kws-resnet or sid-xvector."""
    try:
        return DEFAULT_MODELS[task]
    except KeyError:
        raise CorpusError(f"unknown task {task!r}; valid tasks: {', '.join(DEFAULT_MODELS)}") from None


def default_train_config(task: str, model_name: str) -> TrainConfig:
    """The documented training recipe for `model_name` on `task` (see the module docstring)."""
    default_model_for(task)  # validates the task
    family = model_info(model_name).family  # validates the name, listing valid ones
    recipe = FAMILY_RECIPES.get(family, SMALL_MODEL_RECIPE)
    return dataclasses.replace(recipe, **TASK_ADJUSTMENTS.get((family, task), {}))


def feature_spec_for_model(corpus: Corpus, model_name: str) -> FeatureSpec:
    """The feature spec model `model_name` consumes on `corpus` (log-mel or waveform)."""
    return feature_spec_for(corpus, kind=model_info(model_name).input_kind)


def corpus_arrays(
    corpus: Corpus, model_input_kind: str, cache_dir: str | Path | None = None, progress: bool = True
) -> tuple[np.ndarray, FeatureSpec]:
    """Features (N, *spec.shape) for every utterance of `corpus` (cached memmap) and their spec."""
    spec = feature_spec_for(corpus, kind=model_input_kind)
    return load_features(corpus, spec, cache_dir=cache_dir, progress=progress), spec


def _train_rows(corpus: Corpus, train_indices: np.ndarray | None) -> np.ndarray:
    if train_indices is None:
        return corpus.indices("train")
    rows = np.asarray(train_indices)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"train_indices must be a 1-D array of corpus positions, got shape {rows.shape} {rows.dtype}")
    if rows.size and (rows.min() < 0 or rows.max() >= len(corpus)):
        raise ValueError(f"train_indices out of range for {corpus.name} ({len(corpus)} utterances)")
    if rows.size == 0:
        raise ValueError("train_indices is empty: nothing to train on")
    return rows.astype(np.int64)


def train_original(
    corpus: Corpus,
    model_name: str,
    seed: int,
    cache_dir: str | Path | None = None,
    config: TrainConfig | None = None,
    train_indices: np.ndarray | None = None,
    progress: bool = True,
    model_options: Mapping[str, Any] | None = None,
) -> tuple[SpeechClassifier, TrainResult, dict[str, float]]:
    """Train `model_name` from a seeded initialisation on `corpus` and measure it.

    - `config` defaults to `default_train_config(corpus.task, model_name)`; `seed` replaces its
      seed (it also seeds the initial weights), and `progress=False` silences every bar.
    - `train_indices` (corpus positions) defaults to the corpus's train split; Retrain passes Dr.
    - Early stopping uses the corpus's validation split (if it has one).
    Returns (model, fit's TrainResult, metrics) with metrics `train_accuracy` (on the rows
    trained on), `validation_accuracy`, `test_accuracy` (NaN for an empty split) and
    `train_seconds`.
    """
    recipe = config or default_train_config(corpus.task, model_name)
    config = dataclasses.replace(recipe, seed=seed, progress=progress and recipe.progress)
    train_rows = _train_rows(corpus, train_indices)
    features, _ = corpus_arrays(corpus, model_info(model_name).input_kind, cache_dir, progress=config.progress)
    seed_everything(seed)
    model = create_model(model_name, corpus.num_classes, **dict(model_options or {}))
    train = ArrayData(features, corpus.labels, train_rows)
    validation = ArrayData(features, corpus.labels, corpus.indices("validation"))
    test = ArrayData(features, corpus.labels, corpus.indices("test"))
    result = fit(model, train, validation, config)
    metrics = {
        "train_accuracy": accuracy(model, train, config.eval_batch_size),
        "validation_accuracy": accuracy(model, validation, config.eval_batch_size),
        "test_accuracy": accuracy(model, test, config.eval_batch_size),
        "train_seconds": result.seconds,
    }
    return model, result, metrics


def checkpoint_metadata(
    corpus: Corpus,
    spec: FeatureSpec,
    model: SpeechClassifier,
    config: TrainConfig,
    metrics: Mapping[str, Any],
    split: Any = None,
    corpus_spec: str | None = None,
    train_result: TrainResult | None = None,
) -> dict[str, Any]:
    """The metadata dict `save_checkpoint` stores beside the weights.

    `corpus_spec` is the spec string the corpus was loaded from (e.g. "fsdd:/data/fsdd"), so
    later commands can reload it; `split` is an UnlearningSplit (stored via its `to_dict`), a
    path, a dict, or None for an original model. `history` starts empty: it lists the deletion
    requests applied later.
    """
    if hasattr(split, "to_dict"):
        split = split.to_dict()
    elif isinstance(split, Path):
        split = str(split)
    metadata = {
        "model": model.build_args,
        "label_names": list(corpus.label_names),
        "feature_spec": dataclasses.asdict(spec),
        "corpus": {
            "name": corpus.name,
            "task": corpus.task,
            "fingerprint": corpus.fingerprint,
            "spec": corpus_spec,
        },
        "split": split,
        "train_config": to_dict(config),
        "metrics": dict(metrics),
        "history": [],
    }
    if train_result is not None:
        metadata["training"] = train_result.to_dict()
    return metadata
