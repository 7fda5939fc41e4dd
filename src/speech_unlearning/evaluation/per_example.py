"""Per-example statistics over a pool of models: the input of every ensemble-level score.

The forgetting score, U-LiRA and the informed attack look at one forget example at a time
across many models (K unlearned models, K Retrains, shadow models), so their inputs carry a
leading model axis:

- `stack_logits(models, data)`: (K, n, C) logits of every model on the rows of an ArrayData view;
- `logit_scaled_confidence(logits, labels)`: (..., n) log p_y - log(1 - p_y), the statistic of
  LiRA (Carlini et al. 2022) and of the NeurIPS 2023 unlearning challenge;
- `attack_features(logits, labels)`: (..., n, F) the features of the informed attack
  (`FEATURE_NAMES`);
- `confidence_matrix(models, data)` and `feature_tensor(models, data)`: the two above, straight
  from a list of models.

Everything is computed in float64 from the logits with log-sum-exp, so confident models
(p_y within 1e-16 of 1) keep a finite, exact statistic instead of log(0).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.special import logsumexp
from torch import nn

from ..training.data import ArrayData
from ..training.inference import predict_logits

FEATURE_NAMES: tuple[str, ...] = ("loss", "logit_confidence", "entropy", "margin")
"""Columns of `attack_features`: cross-entropy, logit-scaled confidence, prediction entropy
(nats) and logit margin (true-class logit minus the largest other logit)."""


def _checked(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 logits (..., n, C) and int64 labels (n,), validated against each other."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim < 2 or labels.ndim != 1 or logits.shape[-2] != labels.shape[0]:
        raise ValueError(f"logits (..., n, C) and labels (n,) disagree: {logits.shape} vs {labels.shape}")
    classes = logits.shape[-1]
    if classes < 2:
        raise ValueError(f"per-example statistics need at least 2 classes, got {classes}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must lie in [0, {classes}), got [{labels.min()}, {labels.max()}]")
    return logits, labels


def _true_and_others(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The true-class logit (..., n) and the logits with the true class set to -inf (..., n, C)."""
    index = np.broadcast_to(labels[:, None], logits.shape[:-1] + (1,))  # (..., n, 1)
    true_logit = np.take_along_axis(logits, index, axis=-1)[..., 0]
    others = logits.copy()
    np.put_along_axis(others, index, -np.inf, axis=-1)
    return true_logit, others


def logit_scaled_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """log p_y - log(sum_{j != y} p_j) of each row, from logits (..., n, C): (..., n) float64.

    Equals log(p_y / (1 - p_y)) for the softmax p. It is the logit-scaled confidence of the
    NeurIPS 2023 challenge, computed as z_y - logsumexp_{j != y} z_j, which is exact where the
    challenge's probability form (with a 1e-45 floor) saturates at about +-103.6.
    """
    logits, labels = _checked(logits, labels)
    true_logit, others = _true_and_others(logits, labels)
    return true_logit - logsumexp(others, axis=-1)


def attack_features(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-example attack features (..., n, F) in the order of `FEATURE_NAMES`, float64."""
    logits, labels = _checked(logits, labels)
    true_logit, others = _true_and_others(logits, labels)
    log_probs = logits - logsumexp(logits, axis=-1, keepdims=True)  # (..., n, C)
    loss = -np.take_along_axis(log_probs, np.broadcast_to(labels[:, None], logits.shape[:-1] + (1,)), axis=-1)[..., 0]
    confidence = true_logit - logsumexp(others, axis=-1)
    entropy = -np.sum(np.exp(log_probs) * log_probs, axis=-1)
    margin = true_logit - others.max(axis=-1)
    return np.stack([loss, confidence, entropy, margin], axis=-1)


def seed_groups(groups: Sequence[int] | np.ndarray | None, count: int, pool: str) -> np.ndarray:
    """(K,) group id (seed) of each model of a pool; by default its position, so that model i of
    every pool is held out together by the leave-one-seed-out attacks."""
    if groups is None:
        return np.arange(count)
    groups = np.asarray(groups).reshape(-1)
    if len(groups) != count:
        raise ValueError(f"{pool}: {len(groups)} group ids for {count} models")
    return groups


def view_labels(data: ArrayData) -> np.ndarray:
    """(n,) int64 labels of the rows of `data`, in view order."""
    return np.asarray(data.labels[data.indices], dtype=np.int64)


def stack_logits(models: Sequence[nn.Module], data: ArrayData, batch_size: int = 256) -> np.ndarray:
    """(K, n, C) float32 logits of each of `models` on the rows of `data`, in order."""
    if not models:
        raise ValueError("stack_logits: no model given")
    return np.stack([predict_logits(model, data, batch_size) for model in models])


def confidence_matrix(models: Sequence[nn.Module], data: ArrayData, batch_size: int = 256) -> np.ndarray:
    """(K, n) logit-scaled confidence of the true label, one row per model of `models`."""
    return logit_scaled_confidence(stack_logits(models, data, batch_size), view_labels(data))


def feature_tensor(models: Sequence[nn.Module], data: ArrayData, batch_size: int = 256) -> np.ndarray:
    """(K, n, F) attack features (`FEATURE_NAMES`), one slab per model of `models`."""
    return attack_features(stack_logits(models, data, batch_size), view_labels(data))
