"""ROC summaries of an attack's scores: AUC, TPR at a fixed low FPR, balanced accuracy.

Shared by U-LiRA and the informed attack. Convention everywhere: a higher score means "more
likely positive"; the positive class is stated by the caller (for the unlearning attacks: the
model was unlearned, the negative: it is a Retrain that never saw the example).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from .mia import MIAInputError


def _scored(scores: np.ndarray, is_positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat float64 scores and booleans; raises unless both classes are present and scores finite."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    is_positive = np.asarray(is_positive, dtype=bool).reshape(-1)
    if scores.shape != is_positive.shape:
        raise ValueError(f"scores {scores.shape} and labels {is_positive.shape} differ in size")
    if not np.isfinite(scores).all():
        raise ValueError("ROC scores must be finite")
    if is_positive.all() or not is_positive.any():
        raise MIAInputError("a ROC needs at least one positive and one negative")
    return scores, is_positive


def roc_auc(scores: np.ndarray, is_positive: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counted 1/2.

    0.5 = the scores do not tell the classes apart; 1.0 = every positive outranks every negative.
    Computed from mid-ranks (the Mann-Whitney U statistic), so it is exact with ties.
    """
    scores, is_positive = _scored(scores, is_positive)
    ranks = rankdata(scores)  # mid-ranks for ties
    positives, negatives = int(is_positive.sum()), int((~is_positive).sum())
    u_statistic = ranks[is_positive].sum() - positives * (positives + 1) / 2
    return float(u_statistic / (positives * negatives))


def roc_points(scores: np.ndarray, is_positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of the rule "positive when score >= t" at every distinct t, from (0, 0) up."""
    scores, is_positive = _scored(scores, is_positive)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_positive = scores[order], is_positive[order]
    # the last row of each run of tied scores closes one threshold
    closes = np.r_[np.diff(sorted_scores) != 0, True]
    true_positives = np.cumsum(sorted_positive)[closes]
    false_positives = np.cumsum(~sorted_positive)[closes]
    tpr = np.r_[0.0, true_positives / is_positive.sum()]
    fpr = np.r_[0.0, false_positives / (~is_positive).sum()]
    return fpr, tpr


def tpr_at_fpr(scores: np.ndarray, is_positive: np.ndarray, max_fpr: float) -> float:
    """The highest TPR of any threshold whose FPR is at most `max_fpr`.

    With m negatives the FPR moves in steps of 1/m: below 1/m only zero false positives are
    allowed, so report the negative count next to this number.
    """
    if not 0 <= max_fpr <= 1:
        raise ValueError(f"max_fpr must be in [0, 1], got {max_fpr}")
    fpr, tpr = roc_points(scores, is_positive)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def balanced_accuracy(predicted_positive: np.ndarray, is_positive: np.ndarray) -> float:
    """Mean of the TPR and the TNR of hard predictions; 0.5 = chance whatever the class balance."""
    predicted, truth = _scored(np.asarray(predicted_positive, dtype=np.float64), is_positive)
    predicted = predicted.astype(bool)
    return float((predicted[truth].mean() + (~predicted[~truth]).mean()) / 2)
