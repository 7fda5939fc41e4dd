"""Linear representation probe: is a group still identifiable from a model's embeddings?

Output-level metrics can be fooled by a model that merely suppresses an answer in its head
while its representation still encodes it. The probe fits a logistic regression on the
penultimate embeddings (`model.embed`) to separate a target group (the forgotten class or
speaker, or the forget set's members) from the rest, and scores it on held-out folds.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .mia import MIAInputError, single_threaded


def representation_probe(
    embeddings: np.ndarray,
    is_target: np.ndarray,
    seed: int = 0,
    max_folds: int = 5,
) -> dict[str, float]:
    """Cross-validated linear probe separating rows with `is_target` from the others.

    `embeddings` (n, D), `is_target` (n,) booleans; callers balance the two groups. A
    standardise + logistic-regression pipeline is scored by `StratifiedKFold` with
    min(`max_folds`, smaller group size) folds. Returns mean held-out `balanced_accuracy` and
    `auc` (ROC-AUC, target = positive), `n_target`, `n_other`, `n_folds`.
    0.5 = the group is not linearly identifiable; 1.0 = perfectly identifiable.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64).reshape(len(embeddings), -1)  # (n, D)
    is_target = np.asarray(is_target, dtype=bool)
    n_target, n_other = int(is_target.sum()), int((~is_target).sum())
    folds = min(max_folds, n_target, n_other)
    if folds < 2:
        raise MIAInputError(f"the probe needs at least 2 samples per group, got {n_target} target / {n_other} other")
    # C=1 with standardised inputs: a fixed, moderate L2 penalty so high-dimensional backbone
    # embeddings on a few hundred rows do not separate anything by pure overfitting.
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scoring = ("balanced_accuracy", "roc_auc")
    with single_threaded():
        scores = cross_validate(probe, embeddings, is_target.astype(np.int64), cv=splitter, scoring=scoring)
    return {
        "balanced_accuracy": float(np.mean(scores["test_balanced_accuracy"])),
        "auc": float(np.mean(scores["test_roc_auc"])),
        "n_target": float(n_target),
        "n_other": float(n_other),
        "n_folds": float(folds),
    }
