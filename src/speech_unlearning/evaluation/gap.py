"""Distance of an unlearned model to the retrained model, the gold standard of unlearning.

A perfect unlearning method produces a model indistinguishable from one retrained on Dr alone,
so every metric is compared with the retrained model's value rather than with an ideal number.
In particular, for sample unlearning the target accuracy on Df is the retrained model's Df
accuracy (roughly its test accuracy), not zero: a model that gets Df wrong on purpose is as
suspicious as one that still remembers it.

Avg. Gap (SalUn, Fan et al. 2024) = mean |unlearned - retrained| over Df accuracy, Dr
accuracy, Dtest accuracy and the MIA score, in percentage points. For class unlearning the
utility term is the remaining classes' Dtest accuracy (`accuracy.test_remaining`): the forgotten
class is already counted through Df, and on the full test set its rows would count a second
time, as lost utility. The full-test gap stays in `gaps_pp` ("accuracy.test") for comparison.

Over several runs (seeds, forget ratios) it can be pooled two ways, and they differ:
- the mean of the per-run gaps (`gap_to_retrain` per run, then averaged): every run's distance
  counts, so run-to-run noise adds up and never cancels. The stricter of the two.
- the gap of the means (`gap_of_means`): each metric is first averaged over the runs, for the
  method and for Retrain alike, and Avg. Gap is taken between the averages. That is how SalUn's
  tables are built (its Avg. Gap follows from the mean values printed beside it), and how the
  paper averages its tables over seeds, ratios and backbones.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

MetricTable = Mapping[str, Mapping[str, float]]  # metric name -> {key: value}

AVG_GAP_ACCURACY_TERMS: tuple[str, ...] = ("accuracy.df", "accuracy.dr")
# The utility term: the remaining classes' test accuracy where the split forgot classes (only class
# splits report it), else the whole test set.
AVG_GAP_UTILITY_CANDIDATES: tuple[str, ...] = ("accuracy.test_remaining", "accuracy.test")
# The MIA term of Avg. Gap: SalUn's SVC MIA-efficacy (confidence feature); the loss attack's
# accuracy stands in when the SVC attack was not run.
AVG_GAP_MIA_CANDIDATES: tuple[str, ...] = ("svc_mia.confidence", "loss_mia.accuracy")


def is_rate_key(key: str) -> bool:
    """Keys of metric results are fractions in [0, 1] except counts, whose names start with `n_`."""
    return not key.startswith("n_")


def flatten(table: MetricTable, metrics: set[str] | None = None) -> dict[str, float]:
    """{"accuracy": {"df": 0.9}} -> {"accuracy.df": 0.9}, rates only, of `metrics` (default all)."""
    return {
        f"{name}.{key}": float(value)
        for name, values in table.items()
        if metrics is None or name in metrics
        for key, value in values.items()
        if is_rate_key(key)
    }


def gap_to_retrain(unlearned: MetricTable, retrained: MetricTable, metrics: set[str] | None = None) -> dict:
    """Absolute gaps to the retrained model, in percentage points, and the Avg. Gap.

    `unlearned` and `retrained` map metric name -> {key: value in [0, 1]}; `metrics` limits
    which metric names are compared (default: all they share). Returns
    - "gaps_pp": {"metric.key": 100 * |unlearned - retrained|} for every rate both have;
    - "avg_gap_pp": the mean gap over the Avg. Gap terms present (None if none is);
    - "avg_gap_terms": those terms (Df and Dr accuracy, one Dtest accuracy and one MIA score).
    """
    mine, target = flatten(unlearned, metrics), flatten(retrained, metrics)
    gaps = {
        key: 100.0 * abs(mine[key] - target[key])
        for key in sorted(mine.keys() & target.keys())
        if math.isfinite(mine[key]) and math.isfinite(target[key])
    }
    utility_term = next((key for key in AVG_GAP_UTILITY_CANDIDATES if key in gaps), None)
    mia_term = next((key for key in AVG_GAP_MIA_CANDIDATES if key in gaps), None)
    terms = [key for key in AVG_GAP_ACCURACY_TERMS if key in gaps] + [t for t in (utility_term, mia_term) if t]
    average = sum(gaps[key] for key in terms) / len(terms) if terms else None
    return {"gaps_pp": gaps, "avg_gap_pp": average, "avg_gap_terms": terms}


def mean_table(tables: Sequence[MetricTable]) -> dict[str, dict[str, float]]:
    """The rate-by-rate mean of several metric tables, over the rates every table has (finite)."""
    flat = [flatten(table) for table in tables]
    if not flat:
        return {}
    shared = set.intersection(*(set(key for key, value in row.items() if math.isfinite(value)) for row in flat))
    averaged: dict[str, dict[str, float]] = {}
    for key in sorted(shared):
        name, _, rate = key.partition(".")
        averaged.setdefault(name, {})[rate] = sum(row[key] for row in flat) / len(flat)
    return averaged


def gap_of_means(pairs: Sequence[tuple[MetricTable, MetricTable]]) -> dict:
    """`gap_to_retrain` between the mean unlearned table and the mean retrained table.

    `pairs` holds (unlearned, retrained) tables of the same runs (same seed and forget split),
    so both averages cover the same cells. Returns what `gap_to_retrain` returns.
    """
    if not pairs:
        raise ValueError("gap_of_means: no (unlearned, retrained) pair to average")
    return gap_to_retrain(mean_table([mine for mine, _ in pairs]), mean_table([target for _, target in pairs]))
