"""Indistinguishability from a Retrain ensemble, metric by metric, not a distance to one Retrain.

Two Retrains of the same split differ by several points on every metric, so a method is judged
against the spread of K Retrains (other seeds): for each scalar metric (Df / Dr / Dtest
accuracy, each attack's number) the Retrains' mean and standard deviation, and a two-sided test
of whether the method's values lie inside the Retrain distribution, at confidence `level`
(default 0.95, so alpha = 1 - level = 0.05):
- the method has n >= 2 values (unlearning seeds) and K >= 2 Retrains: Welch's t-test of equal
  means (unequal variances); inside when p >= alpha;
- the method has one value: the `level` prediction interval of one more draw from the Retrains,
  mean +- t(1 - alpha/2, K - 1) * std * sqrt(1 + 1/K); inside when the value falls in it (the
  matching p-value is reported);
- fewer than 2 Retrain values: not tested (`inside` is None), and left out of the count.
When both sides have zero spread the test degenerates: inside exactly when the means are equal.

How to read "indistinguishable from Retrain on N of M metrics": "inside" means the test did not
find a difference, not that there is none; with K = 3 the test has little power, so state K.
Each metric is tested on its own (no multiple-comparison correction), so a method as good as
another Retrain still lands outside on about 1 metric in 20 at the default level.

Two flags guard the verdict:
- `nothing_to_forget`: the Original itself is inside the Retrain distribution on every tested
  metric, so no method can show measurable forgetting on this split;
- `is_no_op`: the unlearned weights are byte-identical to the Original's; such a method passes
  any check the Original passes and is not a win.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from scipy import stats
from torch import nn

from .gap import MetricTable, flatten

LEVEL = 0.95


@dataclass(frozen=True)
class RetrainComparison:
    """One metric of a method against the Retrain ensemble."""

    retrain_mean: float
    retrain_std: float  # sample standard deviation (ddof = 1); NaN for one Retrain
    n_retrains: int
    method_mean: float
    method_std: float  # NaN for one value
    n_method: int
    test: str  # "welch" | "prediction_interval" | "untested"
    p_value: float  # NaN when untested
    inside: bool | None  # None when untested

    def to_dict(self) -> dict:
        return asdict(self)


def _values(values: Sequence[float] | float, name: str) -> np.ndarray:
    array = np.atleast_1d(np.asarray(values, dtype=np.float64)).reshape(-1)
    if array.size == 0 or not np.isfinite(array).all():
        raise ValueError(f"{name}: need at least one finite value, got {array}")
    return array


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) >= 2 else math.nan


def _degenerate_p(method: np.ndarray, retrains: np.ndarray) -> float:
    """p of a test with no spread on either side: 1 if the means agree, else 0."""
    return 1.0 if math.isclose(method.mean(), retrains.mean(), rel_tol=1e-12, abs_tol=1e-12) else 0.0


def _welch_p(method: np.ndarray, retrains: np.ndarray) -> float:
    if np.ptp(method) == 0 and np.ptp(retrains) == 0:
        return _degenerate_p(method, retrains)
    return float(stats.ttest_ind(method, retrains, equal_var=False).pvalue)


def _prediction_p(value: float, retrains: np.ndarray) -> float:
    """Two-sided p of one new draw `value` under the Retrains' Student-t predictive distribution."""
    spread = _std(retrains) * math.sqrt(1 + 1 / len(retrains))
    if spread == 0:
        return _degenerate_p(np.array([value]), retrains)
    return float(2 * stats.t.sf(abs(value - retrains.mean()) / spread, df=len(retrains) - 1))


def compare_with_retrains(
    method_values: Sequence[float] | float, retrain_values: Sequence[float], level: float = LEVEL
) -> RetrainComparison:
    """Whether the method's values lie inside the Retrain distribution (module docstring: the test)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    method, retrains = _values(method_values, "method values"), _values(retrain_values, "Retrain values")
    if len(retrains) < 2:
        test, p_value = "untested", math.nan
    elif len(method) >= 2:
        test, p_value = "welch", _welch_p(method, retrains)
    else:
        test, p_value = "prediction_interval", _prediction_p(float(method[0]), retrains)
    inside = None if test == "untested" else bool(p_value >= 1 - level)
    return RetrainComparison(
        retrain_mean=float(retrains.mean()),
        retrain_std=_std(retrains),
        n_retrains=len(retrains),
        method_mean=float(method.mean()),
        method_std=_std(method),
        n_method=len(method),
        test=test,
        p_value=p_value,
        inside=inside,
    )


def metric_values(tables: Sequence[MetricTable]) -> dict[str, list[float]]:
    """{"metric.key": [value per run]} from per-run metric tables (rates only, finite only).

    `tables` are the `{metric: {key: value}}` results of one role over several seeds.
    """
    collected: dict[str, list[float]] = {}
    for table in tables:
        for key, value in flatten(table).items():
            if math.isfinite(value):
                collected.setdefault(key, []).append(value)
    return collected


def indistinguishability(
    method: Mapping[str, Sequence[float] | float], retrains: Mapping[str, Sequence[float]], level: float = LEVEL
) -> dict:
    """Every metric the two share, compared; and the headline count.

    `method` and `retrains` map a metric name ("accuracy.df", "ulira.auc", ...) to its values
    over seeds. Returns comparisons {metric: RetrainComparison.to_dict()}, n_inside, n_tested,
    untested (names), level, and headline "indistinguishable from Retrain on N of M metrics".
    """
    shared = sorted(method.keys() & retrains.keys())
    comparisons = {name: compare_with_retrains(method[name], retrains[name], level) for name in shared}
    tested = [name for name, comparison in comparisons.items() if comparison.inside is not None]
    inside = sum(bool(comparisons[name].inside) for name in tested)
    return {
        "comparisons": {name: comparison.to_dict() for name, comparison in comparisons.items()},
        "n_inside": inside,
        "n_tested": len(tested),
        "untested": sorted(set(comparisons) - set(tested)),
        "level": level,
        "headline": f"indistinguishable from Retrain on {inside} of {len(tested)} metrics",
    }


def nothing_to_forget(
    original: Mapping[str, Sequence[float] | float], retrains: Mapping[str, Sequence[float]], level: float = LEVEL
) -> bool:
    """True when the Original is inside the Retrain distribution on every tested metric (at least one):
    there is nothing measurable to forget on this split, whatever a method scores."""
    summary = indistinguishability(original, retrains, level)
    return summary["n_tested"] > 0 and summary["n_inside"] == summary["n_tested"]


def _state(model: nn.Module | Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    return model.state_dict() if isinstance(model, nn.Module) else model


def _raw_bytes(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's memory as uint8, so -0.0 vs 0.0 and NaN payloads count as changes."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)


def is_no_op(
    unlearned: nn.Module | Mapping[str, torch.Tensor], original: nn.Module | Mapping[str, torch.Tensor]
) -> bool:
    """True when every entry of the two state dicts (weights and buffers) has the same name,
    dtype, shape and bytes: the "unlearned" model is the Original unchanged."""
    mine, theirs = _state(unlearned), _state(original)
    if mine.keys() != theirs.keys():
        return False
    for name, tensor in mine.items():
        other = theirs[name]
        if tensor.dtype != other.dtype or tensor.shape != other.shape:
            return False
        if not torch.equal(_raw_bytes(tensor), _raw_bytes(other)):
            return False
    return True
