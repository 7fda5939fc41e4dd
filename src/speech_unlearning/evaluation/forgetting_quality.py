"""The forgetting score of the NeurIPS 2023 Machine Unlearning challenge, and its final score.

Reference: E. Triantafillou et al., "Are we making progress in unlearning? Findings from the
first NeurIPS unlearning competition", 2024, and the challenge's evaluation document with its
reference implementation (google-deepmind/unlearning_evaluation, metric.py). Written
from the algorithm, not from that code.

Inputs: the logit-scaled confidence of the true class, s = log p_y - log(1 - p_y)
(`per_example.logit_scaled_confidence`), of every forget example under K unlearned models and
under K Retrains (retrained on Dr alone, other seeds): two (K, n) arrays.

Per forget example x:
1. Two samples of s(x), one per pool. The "positive" one is the one with the larger median.
2. If one sample's range (max - min) is under 1 % of the other's, eps(x) = 50 (the cap) at once:
   a near-constant pool against a spread one is suspicious in a way the threshold grid is too
   coarse to measure.
3. Two families of decision rules, on grids of 100 thresholds per unit of s:
   - single threshold t in [min, max] of both samples: predict "positive" when s >= t;
   - double threshold (l, r): predict the peakier sample (the smaller range) when l <= s <= r,
     with r within 2 of that sample's max and r - l within 2 of its range.
4. Every rule has a false-positive rate FPR and a false-negative rate FNR over the models, and
   eps(rule) = max(log(1 - delta - FPR) - log(FNR), log(1 - delta - FNR) - log(FPR)), clipped at 0,
   delta = 1e-5: the smallest eps for which that operating point is allowed by
   (eps, delta)-indistinguishability (Kairouz, Oh & Viswanath 2015). FPR = FNR = 0 (perfect
   separation) gives eps = infinity; a rule with exactly one zero rate is dropped (with K models
   a zero rate usually means too few samples, not certainty).
5. eps(x) = the largest eps over the kept rules, clipped to [0, 50].

Forgetting quality F: buckets of width 0.5 cover [0, ceil(log(K - 1))), about the largest eps
that K models can resolve (a rate is at least 1/K); bucket b (1-based) is worth 2 / 2^b points
(1, 1/2, 1/4, ...), eps beyond the last bucket earns 0. F = mean points over the forget
examples, in [0, 1]: 1 = no example is told apart at eps >= 0.5.

Final score = F x (mean retain acc. unlearned / mean retain acc. Retrain)
                x (mean test acc. unlearned / mean test acc. Retrain), the ratios unclipped.

Reading it: K bounds the resolution (K = 8 gives 4 buckets, K = 32 gives 8), and the best of
thousands of rules fits noise: two pools drawn from one distribution typically leave one
negative among the top few values of a tail, eps about log 5, so they score about 0.2 (measured
on Gaussian samples for K from 8 to 128), not 1; identical samples score exactly 1. Compare a
method with the Retrain-vs-Retrain score at the same K, and state K next to every score.

Deliberate differences from the reference implementation: rates are counted from sorted samples
(the same rates, without a models x thresholds matrix); two constant samples get eps = 0 when
equal and the cap otherwise (the reference divides 0 by 0 there); an example with no rule kept
gets eps = 0; the bucket count uses the smaller of the two pool sizes (the reference uses the
unlearned count; the challenge's pools were equal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .mia import MIAInputError

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
BUCKET_WIDTH = 0.5
DOUBLE_THRESHOLD_BUFFER = 2.0
PEAKY_RANGE_RATIO = 0.01
MIN_MODELS = 3  # with 2 models, ceil(log(1)) = 0: no bucket, every score would be 0


def epsilon_of_rates(fpr: np.ndarray, fnr: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """eps of each decision rule from its rates (same shape): inf when both are 0, NaN (= drop)
    when exactly one is 0, else max(log(1-delta-FPR) - log FNR, log(1-delta-FNR) - log FPR) >= 0."""
    fpr, fnr = np.asarray(fpr, dtype=np.float64), np.asarray(fnr, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        one_way = np.log(1 - delta - fpr) - np.log(fnr)
        other_way = np.log(1 - delta - fnr) - np.log(fpr)
        # fmax skips a NaN side (a rate of 1 leaves log of a negative number); both NaN stay NaN
        epsilon = np.clip(np.fmax(one_way, other_way), 0.0, None)
    both_zero = (fpr == 0) & (fnr == 0)
    one_zero = (fpr == 0) ^ (fnr == 0)
    return np.where(both_zero, np.inf, np.where(one_zero, np.nan, epsilon))


def _grid(low: float, high: float) -> np.ndarray:
    """THRESHOLDS_PER_UNIT thresholds per unit of s from `low` to `high`."""
    return np.linspace(low, high, int(math.ceil((high - low) * THRESHOLDS_PER_UNIT)))


def _count_at_least(sorted_sample: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many values of `sorted_sample` are >= each threshold."""
    return len(sorted_sample) - np.searchsorted(sorted_sample, thresholds, side="left")


def _count_between(sorted_sample: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """How many values v of `sorted_sample` have left <= v <= right (0 for an empty interval)."""
    inside = np.searchsorted(sorted_sample, right, side="right") - np.searchsorted(sorted_sample, left, side="left")
    return np.maximum(inside, 0)


def _single_threshold_rates(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, FNR) of "positive when s >= t" over a grid spanning both sorted samples."""
    thresholds = _grid(min(positive[0], negative[0]), max(positive[-1], negative[-1]))
    fpr = _count_at_least(negative, thresholds) / len(negative)
    fnr = (len(positive) - _count_at_least(positive, thresholds)) / len(positive)
    return fpr, fnr


def _double_threshold_rates(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, FNR) of "the peakier sample when l <= s <= r", the peakier sample being the positive."""
    if np.ptp(positive) >= np.ptp(negative):
        positive, negative = negative, positive
    width, buffer = float(np.ptp(positive)), DOUBLE_THRESHOLD_BUFFER
    right = _grid(positive[0] + width - buffer, positive[-1] + buffer)  # (R,)
    offsets = np.linspace(-buffer, buffer, int(math.ceil(2 * buffer * THRESHOLDS_PER_UNIT)))  # (L,)
    left = right[:, None] - width + offsets[None, :]  # (R, L)
    right = np.broadcast_to(right[:, None], left.shape)  # (R, L)
    tpr = _count_between(positive, left, right) / len(positive)
    fpr = _count_between(negative, left, right) / len(negative)
    return fpr.reshape(-1), (1.0 - tpr).reshape(-1)


def example_epsilon(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> float:
    """eps of one forget example from its statistic under the unlearned (K_u,) and Retrain (K_r,)
    models, in [0, EPSILON_CAP]; steps 1-5 of the module docstring."""
    unlearned, retrained = np.sort(unlearned), np.sort(retrained)
    retrained_is_positive = np.median(retrained) > np.median(unlearned)
    positive, negative = (retrained, unlearned) if retrained_is_positive else (unlearned, retrained)
    ranges = sorted((float(np.ptp(positive)), float(np.ptp(negative))))
    if ranges[1] == 0:  # both pools constant: equal values are indistinguishable, others are not
        return 0.0 if positive[0] == negative[0] else EPSILON_CAP
    if ranges[0] / ranges[1] < PEAKY_RANGE_RATIO:
        return EPSILON_CAP
    rates = [_single_threshold_rates(positive, negative), _double_threshold_rates(positive, negative)]
    epsilon = epsilon_of_rates(np.concatenate([r[0] for r in rates]), np.concatenate([r[1] for r in rates]), delta)
    kept = epsilon[~np.isnan(epsilon)]
    return float(min(kept.max(), EPSILON_CAP)) if kept.size else 0.0


def _checked_pools(unlearned: np.ndarray, retrained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both (K, n) float64 arrays, validated: same n >= 1, K >= MIN_MODELS, finite values."""
    unlearned = np.asarray(unlearned, dtype=np.float64)
    retrained = np.asarray(retrained, dtype=np.float64)
    if unlearned.ndim != 2 or retrained.ndim != 2 or unlearned.shape[1] != retrained.shape[1]:
        raise ValueError(f"expected (K, n) arrays over the same examples, got {unlearned.shape} and {retrained.shape}")
    if unlearned.shape[1] == 0:
        raise MIAInputError("the forgetting score needs at least one forget example")
    if min(len(unlearned), len(retrained)) < MIN_MODELS:
        raise MIAInputError(
            f"the forgetting score needs at least {MIN_MODELS} models per pool, "
            f"got {len(unlearned)} unlearned and {len(retrained)} Retrain"
        )
    if not (np.isfinite(unlearned).all() and np.isfinite(retrained).all()):
        raise ValueError("the per-example statistics must be finite")
    return unlearned, retrained


def example_epsilons(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """(n,) eps per forget example from (K_u, n) unlearned and (K_r, n) Retrain statistics."""
    unlearned, retrained = _checked_pools(unlearned, retrained)
    return np.array([example_epsilon(unlearned[:, i], retrained[:, i], delta) for i in range(unlearned.shape[1])])


def resolvable_epsilon(num_models: int) -> float:
    """ceil(log(K - 1)): the top of the bucket range for pools of K models."""
    if num_models < MIN_MODELS:
        raise MIAInputError(f"need at least {MIN_MODELS} models, got {num_models}")
    return float(math.ceil(math.log(num_models - 1)))


def bucket_points(epsilons: np.ndarray, num_models: int) -> np.ndarray:
    """(n,) points per example: 2 / 2^b in bucket b = 1 + floor(eps / 0.5), 0 past the last bucket."""
    buckets = int(round(resolvable_epsilon(num_models) / BUCKET_WIDTH))
    index = np.floor(np.asarray(epsilons, dtype=np.float64) / BUCKET_WIDTH)  # 0-based bucket
    return np.where(index < buckets, 0.5 ** np.minimum(index, buckets), 0.0)


@dataclass(frozen=True)
class ForgettingQuality:
    """The forgetting quality F and what it was computed from."""

    score: float  # F, the mean of `points`, in [0, 1]; 1 = indistinguishable at this K
    epsilons: np.ndarray  # (n,) eps per forget example
    points: np.ndarray  # (n,) bucket points per forget example
    num_models: int  # K behind the buckets (the smaller pool)
    max_epsilon: float  # ceil(log(K - 1)), the top of the bucket range

    def summary(self) -> dict[str, float]:
        """Flat numbers for a report; `n_` keys are counts."""
        return {
            "forgetting_quality": self.score,
            "median_epsilon": float(np.median(self.epsilons)),
            "max_epsilon": self.max_epsilon,
            "n_models": float(self.num_models),
            "n_examples": float(len(self.epsilons)),
        }


def forgetting_quality(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> ForgettingQuality:
    """The challenge's forgetting quality F of (K_u, n) unlearned vs (K_r, n) Retrain statistics.

    Rows are models, columns forget examples, values the logit-scaled confidence of the true
    class. Raises MIAInputError with fewer than 3 models in a pool or no example.
    """
    epsilons = example_epsilons(unlearned, retrained, delta)
    num_models = min(len(unlearned), len(retrained))
    points = bucket_points(epsilons, num_models)
    return ForgettingQuality(float(points.mean()), epsilons, points, num_models, resolvable_epsilon(num_models))


def _mean_accuracy(values: np.ndarray, name: str) -> float:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"{name}: need at least one finite accuracy, got {values}")
    return float(values.mean())


def final_score(
    forgetting: float,
    unlearned_retain_accuracy: np.ndarray,
    retrained_retain_accuracy: np.ndarray,
    unlearned_test_accuracy: np.ndarray,
    retrained_test_accuracy: np.ndarray,
) -> dict[str, float]:
    """The challenge's final score: F x retain-accuracy ratio x test-accuracy ratio.

    Accuracies are per model (any length), averaged per pool before the ratios are taken.
    Returns final_score, retain_ratio and test_ratio (unlearned / Retrain, unclipped).
    """
    retain_ratio = _mean_accuracy(unlearned_retain_accuracy, "unlearned retain accuracy") / _nonzero(
        _mean_accuracy(retrained_retain_accuracy, "Retrain retain accuracy"), "Retrain retain accuracy"
    )
    test_ratio = _mean_accuracy(unlearned_test_accuracy, "unlearned test accuracy") / _nonzero(
        _mean_accuracy(retrained_test_accuracy, "Retrain test accuracy"), "Retrain test accuracy"
    )
    final = forgetting * retain_ratio * test_ratio
    return {"final_score": final, "retain_ratio": retain_ratio, "test_ratio": test_ratio}


def _nonzero(value: float, name: str) -> float:
    if value <= 0:
        raise ValueError(f"{name} is {value}: the utility ratio is undefined")
    return value
