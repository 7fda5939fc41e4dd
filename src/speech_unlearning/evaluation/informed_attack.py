"""The informed attack: a classifier trained on other unlearned models, tested on a held-out one.

Reference: the informed attacker of the 2026 study "Evaluating machine unlearning in ASR"
(dmbdpt/asr-unlearning-evaluation): an attacker who has seen the outputs of other unlearned
models against Retrains learns what the method leaves behind, and finds what a fixed attack
misses (one method there scored 52 % against a simple attack and 88 % against the informed one).

Data: per (model, forget example) the features of `per_example.FEATURE_NAMES` (loss,
logit-scaled confidence, entropy, margin) under K_u unlearned models and K_r Retrains.
Protocol, leave-one-seed-out: models are grouped by seed (by default model i of each pool forms
group i); for each group g a fresh classifier is trained on every (model, example) row of the
other groups, unlearned (1) vs Retrain (0), and predicts the rows of group g's models. The
out-of-fold probabilities of all groups are pooled into the reported numbers, so every model
is scored by an attacker that never saw it.

With `per_example_offset` the attacker also knows how Retrains treat each example: every
feature is also given minus its mean over the training groups' Retrains on the same example
(each training Retrain's own value is left out of its mean, so training and held-out rows are
offset alike). This turns the population attack into a per-example one, like U-LiRA.

Sign convention: `balanced_accuracy` (threshold 0.5) and `auc` are 0.5 when unlearned models
are indistinguishable from Retrains and 1.0 when every held-out model is told apart; values
below 0.5 are chance fluctuations (or an attacker misled by seed-to-seed differences).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..config import require
from ..registry import Registry
from .mia import MIAInputError, single_threaded
from .per_example import seed_groups
from .roc import balanced_accuracy, roc_auc

# factory(seed) -> an unfitted scikit-learn classifier with predict_proba
ATTACK_CLASSIFIERS: Registry[Callable[[int], object]] = Registry("attack classifier")


@ATTACK_CLASSIFIERS.register("logistic")
def _logistic(seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))


@ATTACK_CLASSIFIERS.register("boosting")
def _boosting(seed: int):
    return HistGradientBoostingClassifier(max_iter=100, random_state=seed)


@dataclass
class InformedAttackConfig:
    """Which classifier attacks, and what it is told."""

    classifier: str = field(default="logistic", metadata={"help": "logistic | boosting"})
    per_example_offset: bool = field(
        default=True, metadata={"help": "also give each feature minus the training Retrains' mean on that example"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the classifier"})

    def __post_init__(self) -> None:
        require(
            self.classifier in ATTACK_CLASSIFIERS,
            "classifier",
            f"{self.classifier!r} is not one of {', '.join(ATTACK_CLASSIFIERS.names())}",
        )


def _offset_features(
    features: np.ndarray, retrain_mean: np.ndarray, is_training_retrain: np.ndarray, training_retrains: int
) -> np.ndarray:
    """(M, n, 2F): features and features minus the per-example Retrain mean, each training Retrain
    measured against the mean of the others (leave-one-out)."""
    left_out = (training_retrains * retrain_mean[None] - features) / (training_retrains - 1)  # (M, n, F)
    reference = np.where(is_training_retrain[:, None, None], left_out, retrain_mean[None])
    return np.concatenate([features, features - reference], axis=-1)


def _fold(
    features: np.ndarray, is_unlearned: np.ndarray, train: np.ndarray, config: InformedAttackConfig
) -> np.ndarray:
    """P(unlearned) of every row of the held-out models (~train), from a classifier fitted on `train`."""
    if is_unlearned[train].all() or not is_unlearned[train].any():
        raise MIAInputError("a training fold of the informed attack lacks unlearned models or Retrains")
    if config.per_example_offset:
        training_retrains = train & ~is_unlearned
        if training_retrains.sum() < 2:
            raise MIAInputError("per_example_offset needs at least 2 Retrains in every training fold")
        mean = features[training_retrains].mean(axis=0)  # (n, F)
        features = _offset_features(features, mean, training_retrains, int(training_retrains.sum()))
    labels = np.repeat(is_unlearned[train], features.shape[1])
    classifier = ATTACK_CLASSIFIERS.get(config.classifier)(config.seed)
    with single_threaded():
        classifier.fit(_rows(features, train), labels)
        return classifier.predict_proba(_rows(features, ~train))[:, 1]


def _rows(features: np.ndarray, models: np.ndarray) -> np.ndarray:
    """The (model, example) rows of the selected models: (models * n, F)."""
    return features[models].reshape(-1, features.shape[-1])


def informed_attack(
    unlearned: np.ndarray,
    retrained: np.ndarray,
    config: InformedAttackConfig | None = None,
    unlearned_groups: np.ndarray | None = None,
    retrained_groups: np.ndarray | None = None,
) -> dict[str, float]:
    """Leave-one-seed-out informed attack on (K_u, n, F) unlearned and (K_r, n, F) Retrain features.

    `*_groups` give each model's seed (group id; default its position in the pool, so model i
    of each pool is held out together). Returns, over the pooled out-of-fold predictions
    (positives = unlearned): balanced_accuracy (threshold 0.5), auc, n_folds, n_rows.
    0.5 = indistinguishable from Retrain.
    """
    config = config or InformedAttackConfig()
    unlearned = np.asarray(unlearned, dtype=np.float64)
    retrained = np.asarray(retrained, dtype=np.float64)
    if unlearned.ndim != 3 or unlearned.shape[1:] != retrained.shape[1:]:
        raise ValueError(f"expected (K, n, F) arrays of the same n and F, got {unlearned.shape} and {retrained.shape}")
    features = np.concatenate([unlearned, retrained])  # (M, n, F)
    is_unlearned = np.r_[np.ones(len(unlearned), dtype=bool), np.zeros(len(retrained), dtype=bool)]
    groups = np.concatenate(
        [
            seed_groups(unlearned_groups, len(unlearned), "unlearned"),
            seed_groups(retrained_groups, len(retrained), "retrained"),
        ]
    )
    folds = np.unique(groups)
    if len(folds) < 2:
        raise MIAInputError("the informed attack needs models of at least 2 seeds")
    probabilities, truth = [], []
    for group in folds:
        held_out = groups == group
        probabilities.append(_fold(features, is_unlearned, ~held_out, config))
        truth.append(np.repeat(is_unlearned[held_out], features.shape[1]))
    probability, is_positive = np.concatenate(probabilities), np.concatenate(truth)
    return {
        "balanced_accuracy": balanced_accuracy(probability >= 0.5, is_positive),
        "auc": roc_auc(probability, is_positive),
        "n_folds": float(len(folds)),
        "n_rows": float(len(probability)),
    }
