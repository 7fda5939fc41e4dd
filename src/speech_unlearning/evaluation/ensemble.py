"""Scores of a pool of unlearned models against a pool of Retrains, and their registry.

The metrics of `METRICS` score one model at a time. The scores here need K models on each
side (K unlearned models of one method, K Retrains of the same split), so they register in a
registry of their own, `ENSEMBLE_METRICS`, with the same fields (summary, direction, headline):
- "forgetting_quality": the NeurIPS 2023 challenge's forgetting quality and final score;
- "ulira": U-LiRA, leave-one-seed-out;
- "informed_attack": a classifier trained on the other seeds' models, leave-one-seed-out.

`EnsembleOutputs` holds what they read: the forget-set labels and, per pool, the (K, n, C)
logits on Df, with the per-model retain and test accuracies when known. `model_pool` builds a
pool from models and ArrayData views; `evaluate_ensemble` runs the registered scores and
returns {"results": {name: {key: value}}, "skipped": {name: reason}}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
from torch import nn

from ..config import require
from ..registry import Registry
from ..training.data import ArrayData
from ..training.inference import accuracy
from .forgetting_quality import DELTA, final_score, forgetting_quality
from .informed_attack import InformedAttackConfig, informed_attack
from .metrics import MetricSkipped
from .mia import MIAInputError
from .per_example import attack_features, logit_scaled_confidence, stack_logits, view_labels
from .ulira import ULiRAConfig, ulira_attack


def _optional_vector(values: np.ndarray | None, count: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    values = np.asarray(values).reshape(-1)
    if len(values) != count:
        raise ValueError(f"{name}: {len(values)} values for {count} models")
    return values


@dataclass
class ModelPool:
    """K models' outputs: logits on Df, and per-model accuracies and seeds when known."""

    forget_logits: np.ndarray  # (K, n, C)
    retain_accuracy: np.ndarray | None = None  # (K,)
    test_accuracy: np.ndarray | None = None  # (K,)
    groups: np.ndarray | None = None  # (K,) seed of each model: the attacks' folds (default: position)

    def __post_init__(self) -> None:
        self.forget_logits = np.asarray(self.forget_logits)
        if self.forget_logits.ndim != 3 or len(self.forget_logits) == 0:
            raise ValueError(f"forget_logits must be (K, n, C) with K >= 1, got {self.forget_logits.shape}")
        count = len(self.forget_logits)
        self.retain_accuracy = _optional_vector(self.retain_accuracy, count, "retain_accuracy")
        self.test_accuracy = _optional_vector(self.test_accuracy, count, "test_accuracy")
        self.groups = _optional_vector(self.groups, count, "groups")

    def __len__(self) -> int:
        return len(self.forget_logits)


def model_pool(
    models: Sequence[nn.Module],
    forget: ArrayData,
    retain: ArrayData | None = None,
    test: ArrayData | None = None,
    groups: Sequence[int] | None = None,
    batch_size: int = 256,
) -> ModelPool:
    """A ModelPool from models: their logits on `forget`, and accuracies on `retain` / `test` if given."""
    return ModelPool(
        forget_logits=stack_logits(models, forget, batch_size),
        retain_accuracy=None if retain is None else np.array([accuracy(m, retain, batch_size) for m in models]),
        test_accuracy=None if test is None else np.array([accuracy(m, test, batch_size) for m in models]),
        groups=None if groups is None else np.asarray(groups),
    )


@dataclass
class EnsembleOutputs:
    """The forget-set labels and the two pools scored on it."""

    forget_labels: np.ndarray  # (n,)
    unlearned: ModelPool
    retrained: ModelPool

    def __post_init__(self) -> None:
        self.forget_labels = np.asarray(self.forget_labels, dtype=np.int64).reshape(-1)
        shapes = {self.unlearned.forget_logits.shape[1:], self.retrained.forget_logits.shape[1:]}
        if len(shapes) != 1 or next(iter(shapes))[0] != len(self.forget_labels):
            raise ValueError(
                f"pools and labels disagree: {self.unlearned.forget_logits.shape}, "
                f"{self.retrained.forget_logits.shape}, {len(self.forget_labels)} labels"
            )

    @classmethod
    def from_models(
        cls,
        unlearned: Sequence[nn.Module],
        retrained: Sequence[nn.Module],
        forget: ArrayData,
        retain: ArrayData | None = None,
        test: ArrayData | None = None,
        batch_size: int = 256,
    ) -> "EnsembleOutputs":
        """Forward passes of both pools of models on the views (accuracies only for views given)."""
        return cls(
            view_labels(forget),
            model_pool(unlearned, forget, retain, test, batch_size=batch_size),
            model_pool(retrained, forget, retain, test, batch_size=batch_size),
        )

    def confidences(self, pool: ModelPool) -> np.ndarray:
        """(K, n) logit-scaled confidence of the true label under each model of `pool`."""
        return logit_scaled_confidence(pool.forget_logits, self.forget_labels)

    def features(self, pool: ModelPool) -> np.ndarray:
        """(K, n, F) informed-attack features under each model of `pool`."""
        return attack_features(pool.forget_logits, self.forget_labels)


@dataclass
class EnsembleSettings:
    """Settings of the ensemble scores."""

    delta: float = field(default=DELTA, metadata={"help": "delta of the forgetting score's (eps, delta) estimate"})
    ulira: ULiRAConfig = field(default_factory=ULiRAConfig)
    informed: InformedAttackConfig = field(default_factory=InformedAttackConfig)

    def __post_init__(self) -> None:
        require(0 < self.delta < 1, "delta", f"must be in (0, 1), got {self.delta}")


@dataclass(frozen=True)
class EnsembleMetric:
    """A registered ensemble score: how to compute it and how to read it."""

    name: str
    compute: Callable[[EnsembleOutputs, EnsembleSettings], dict[str, float]]
    summary: str
    direction: str
    headline: tuple[str, ...]


ENSEMBLE_METRICS: Registry[EnsembleMetric] = Registry("ensemble metric")


def register_ensemble_metric(name: str, *, summary: str, direction: str, headline: tuple[str, ...]) -> Callable:
    """Decorator registering `compute(outputs, settings) -> dict` as the ensemble score `name`."""

    def add(compute: Callable[[EnsembleOutputs, EnsembleSettings], dict[str, float]]):
        ENSEMBLE_METRICS.register(name)(EnsembleMetric(name, compute, summary, direction, headline))
        return compute

    return add


def evaluate_ensemble(
    outputs: EnsembleOutputs, names: Iterable[str] | None = None, settings: EnsembleSettings | None = None
) -> dict[str, dict]:
    """Run the named ensemble scores (default all) on `outputs`.

    Returns {"results": {name: {key: value}}, "skipped": {name: reason}}; a score skips when
    its inputs are too small (e.g. fewer than 3 models per pool). An unknown name raises,
    listing the valid ones.
    """
    settings = settings or EnsembleSettings()
    chosen = [ENSEMBLE_METRICS.get(name) for name in (ENSEMBLE_METRICS.names() if names is None else names)]
    results: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    for metric in chosen:
        try:
            results[metric.name] = metric.compute(outputs, settings)
        except (MIAInputError, MetricSkipped) as reason:
            skipped[metric.name] = str(reason)
    return {"results": results, "skipped": skipped}


@register_ensemble_metric(
    "forgetting_quality",
    summary=(
        "NeurIPS 2023 unlearning challenge: per forget example, eps from the best single / double threshold on "
        "the logit-scaled confidence over K unlearned vs K Retrain models (delta = 1e-5); bucketed score F; "
        "final score = F x retain-accuracy ratio x test-accuracy ratio"
    ),
    direction=(
        "higher = more like Retrain; identical samples give 1, but two Retrain pools score about 0.2 (finite K): "
        "compare with a Retrain-vs-Retrain score at the same K (n_models)"
    ),
    headline=("forgetting_quality", "final_score", "n_models"),
)
def forgetting_quality_metric(outputs: EnsembleOutputs, settings: EnsembleSettings) -> dict[str, float]:
    unlearned, retrained = outputs.unlearned, outputs.retrained
    score = forgetting_quality(outputs.confidences(unlearned), outputs.confidences(retrained), settings.delta)
    result = score.summary()
    accuracies = (
        unlearned.retain_accuracy,
        retrained.retain_accuracy,
        unlearned.test_accuracy,
        retrained.test_accuracy,
    )
    if all(values is not None for values in accuracies):
        result.update(final_score(score.score, *accuracies))
    return result


@register_ensemble_metric(
    "ulira",
    summary=(
        "U-LiRA (Hayes et al. 2024): per-example Gaussians of the logit-scaled confidence under the other unlearned "
        "models (IN) and the other Retrains (OUT), likelihood ratio per (model, example), leave-one-seed-out"
    ),
    direction="0.5 (auc, accuracy) = unlearned models indistinguishable from Retrains; 1.0 = always told apart",
    headline=("auc", "accuracy", "tpr_at_1pct_fpr"),
)
def ulira_metric(outputs: EnsembleOutputs, settings: EnsembleSettings) -> dict[str, float]:
    return ulira_attack(
        outputs.confidences(outputs.unlearned),
        outputs.confidences(outputs.retrained),
        settings.ulira,
        outputs.unlearned.groups,
        outputs.retrained.groups,
    )


@register_ensemble_metric(
    "informed_attack",
    summary=(
        "informed attack: a classifier on per-example features (loss, logit-scaled confidence, entropy, margin) "
        "trained on the other seeds' unlearned vs Retrain models, tested on the held-out seed"
    ),
    direction="0.5 (balanced_accuracy, auc) = indistinguishable from Retrain; 1.0 = every held-out model told apart",
    headline=("balanced_accuracy", "auc"),
)
def informed_attack_metric(outputs: EnsembleOutputs, settings: EnsembleSettings) -> dict[str, float]:
    return informed_attack(
        outputs.features(outputs.unlearned),
        outputs.features(outputs.retrained),
        settings.informed,
        outputs.unlearned.groups,
        outputs.retrained.groups,
    )
