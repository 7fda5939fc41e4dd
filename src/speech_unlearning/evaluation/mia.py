"""Black-box membership-inference attacks (MIA) on a model's losses and output probabilities.

Both attacks take plain numpy arrays, so they can be tested without a model.

- `loss_mia` (the NeurIPS 2023 machine-unlearning challenge's attack): per-sample cross-entropy
  losses of the forget set (members) against those of held-out data (non-members), balanced by a
  seeded subsample of the larger group; a logistic regression on that single feature, scored by
  stratified cross-validation. 0.5 means the forget set looks like unseen data.
- `svc_mia` (the SVC attack of the l1-sparse / SalUn papers): RBF SVMs trained to separate
  shadow members (retain samples) from shadow non-members (test samples) on features of the
  softmax output, then applied to the forget set. "MIA-efficacy" is the fraction of the forget
  set the attack calls non-member: higher means more forgotten.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

# Guards log(0) for probabilities that underflow to exactly 0 or 1.
_LOG_FLOOR = 1e-30
LOSS_MIA_FOLDS = 10  # cross-validation folds of the loss MIA (fewer when a group is smaller)


def single_threaded():
    """Context: BLAS / OpenMP on one thread.

    The attack and probe models are small (a few features, a few thousand rows); extra BLAS
    threads only add synchronisation overhead, several-fold on a busy machine.
    """
    return threadpool_limits(limits=1)


class MIAInputError(ValueError):
    """The groups handed to an attack are too small (or malformed) to run it."""


def balanced_subsample(
    group_a: np.ndarray, group_b: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `group_a` and `group_b` cut to the smaller group's size by a seeded subsample.

    The smaller group is kept whole (in order); the larger is subsampled without replacement.
    """
    size = min(len(group_a), len(group_b))

    def cut(group: np.ndarray) -> np.ndarray:
        if len(group) == size:
            return group
        return group[np.sort(rng.choice(len(group), size=size, replace=False))]

    return cut(group_a), cut(group_b)


def loss_mia(
    member_losses: np.ndarray,
    nonmember_losses: np.ndarray,
    seed: int = 0,
    max_folds: int = LOSS_MIA_FOLDS,
) -> dict[str, float]:
    """Loss-threshold membership inference: can a logistic regression tell members by their loss?

    `member_losses` (n,) are per-sample cross-entropy losses on the forget set,
    `nonmember_losses` (m,) those on held-out data. The larger group is subsampled (seeded) to
    the smaller one's size; `StratifiedKFold` with min(`max_folds`, group size) folds scores a
    logistic regression on the 1-D loss feature. Returns the mean held-out `accuracy` and
    `auc` (ROC-AUC, members = positive class) over folds, plus `n_per_group` and `n_folds`
    (fewer than `max_folds` when a group has fewer samples than that).
    0.5 = indistinguishable from unseen data (forgotten); 1.0 = every member recognised.
    """
    rng = np.random.default_rng(seed)
    members, nonmembers = balanced_subsample(
        np.asarray(member_losses, dtype=np.float64), np.asarray(nonmember_losses, dtype=np.float64), rng
    )
    per_group = len(members)
    if per_group < 2:
        raise MIAInputError(f"loss MIA needs at least 2 samples per group, got {per_group}")
    folds = min(max_folds, per_group)
    features = np.concatenate([members, nonmembers])[:, None]  # (2n, 1)
    is_member = np.concatenate([np.ones(per_group), np.zeros(per_group)]).astype(np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with single_threaded():
        scores = cross_validate(LogisticRegression(), features, is_member, cv=splitter, scoring=("accuracy", "roc_auc"))
    return {
        "accuracy": float(np.mean(scores["test_accuracy"])),
        "auc": float(np.mean(scores["test_roc_auc"])),
        "n_per_group": float(per_group),
        "n_folds": float(folds),
    }


# ---------------------------------------------------------------------------------------------
# SVC attack features: each maps (probs (n, C), labels (n,)) to a feature matrix (n, k).


def true_label_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """p_y, the probability the model gives the true label: (n,)."""
    return probs[np.arange(len(labels)), labels]


def prediction_entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy -Σ_i p_i log p_i of each row, in nats: (n,)."""
    return -np.sum(probs * np.log(np.clip(probs, _LOG_FLOOR, 1.0)), axis=1)


def modified_entropy(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Song & Mittal's modified prediction entropy, in nats: (n,).

    Mentr(p, y) = -(1 - p_y) log(p_y) - Σ_{i≠y} p_i log(1 - p_i).
    Unlike plain entropy it is monotone in correctness: small for a confident correct
    prediction, large for a confident wrong one.
    """
    rows = np.arange(len(labels))
    p_true = probs[rows, labels]
    true_term = -(1.0 - p_true) * np.log(np.clip(p_true, _LOG_FLOOR, 1.0))
    wrong_terms = -probs * np.log(np.clip(1.0 - probs, _LOG_FLOOR, 1.0))  # (n, C)
    wrong_terms[rows, labels] = 0.0  # the sum runs over i ≠ y only
    return true_term + wrong_terms.sum(axis=1)


def _column(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1, 1)  # (n, 1)


SVC_FEATURES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "confidence": lambda probs, labels: _column(true_label_confidence(probs, labels)),
    "entropy": lambda probs, labels: _column(prediction_entropy(probs)),
    "m_entropy": lambda probs, labels: _column(modified_entropy(probs, labels)),
    "correctness": lambda probs, labels: _column(probs.argmax(axis=1) == labels),
    "prob": lambda probs, labels: np.asarray(probs, dtype=np.float64),
}
"""The attack features of the reference SVC-MIA; "confidence" gives the number papers report."""


def svc_mia(
    shadow_member_probs: np.ndarray,
    shadow_member_labels: np.ndarray,
    shadow_nonmember_probs: np.ndarray,
    shadow_nonmember_labels: np.ndarray,
    target_probs: np.ndarray,
    target_labels: np.ndarray,
    features: tuple[str, ...] = tuple(SVC_FEATURES),
) -> dict[str, float]:
    """SVC membership attack; returns the MIA-efficacy of each feature on the target set.

    Inputs are softmax outputs (n, C) with integer labels (n,). For each feature an
    `SVC(C=3, gamma="auto")` (RBF) is fitted on shadow members (label 1) vs shadow non-members
    (label 0); the result under the feature's name is the fraction of the target rows it
    predicts as non-member. Higher = the target (the forget set) looks less like training data.
    Callers balance the shadow groups; `n_shadow_per_group` and `n_target` record the sizes.
    """
    if len(shadow_member_probs) < 1 or len(shadow_nonmember_probs) < 1:
        raise MIAInputError("SVC MIA needs at least one shadow member and one shadow non-member")
    if len(target_probs) < 1:
        raise MIAInputError("SVC MIA needs at least one target sample")
    unknown = sorted(set(features) - set(SVC_FEATURES))
    if unknown:
        raise MIAInputError(f"unknown SVC MIA feature(s) {unknown}; valid: {', '.join(SVC_FEATURES)}")
    shadow_probs = np.concatenate([shadow_member_probs, shadow_nonmember_probs])
    shadow_labels = np.concatenate([shadow_member_labels, shadow_nonmember_labels]).astype(np.int64)
    is_member = np.concatenate([np.ones(len(shadow_member_probs)), np.zeros(len(shadow_nonmember_probs))])
    target_labels = np.asarray(target_labels, dtype=np.int64)
    result: dict[str, float] = {}
    for name in features:
        featurise = SVC_FEATURES[name]
        attack = SVC(C=3, gamma="auto", kernel="rbf")
        with single_threaded():
            attack.fit(featurise(shadow_probs, shadow_labels), is_member)
            predicted_member = attack.predict(featurise(target_probs, target_labels))
        result[name] = float(np.mean(predicted_member == 0))
    result["n_shadow_per_group"] = float(min(len(shadow_member_probs), len(shadow_nonmember_probs)))
    result["n_target"] = float(len(target_probs))
    return result

