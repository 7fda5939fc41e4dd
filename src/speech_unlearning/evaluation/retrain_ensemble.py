"""One row of a split scored against its Retrain ensemble: what the bench and `evaluate` report.

A row is a method's K unlearned models, the Original, or the Retrain-vs-Retrain reference, each
set against the K Retrains of the same split. It carries
- "scores": the ensemble scores of `ENSEMBLE_METRICS` (forgetting_quality with the final score,
  ulira, informed_attack) when both pools hold at least `MIN_MODELS` models, else "skipped";
- "spread": `indistinguishability` of the row's per-model metric tables against the Retrains'
  (the registered metrics' headline keys, wall time left out): Retrain mean ± std per metric,
  the test, and the headline "indistinguishable from Retrain on N of M metrics";
- "no_op" (method rows): every unlearned model is byte-identical to the Original;
- "nothing_to_forget" (the Original's row): the Original is inside the Retrain spread on every
  tested metric;
- "verdict": "no-op", "nothing measurable to forget" or the headline.

The Retrain-vs-Retrain row splits the Retrains in two halves (first half = the "unlearned" pool),
so the reader sees the scores' noise floor; its pools hold K // 2 models each, fewer than a
method row's, which the row states ("n_unlearned", "n_retrains").
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from .ensemble import ENSEMBLE_METRICS, EnsembleOutputs, EnsembleSettings, ModelPool, evaluate_ensemble
from .forgetting_quality import MIN_MODELS
from .gap import MetricTable
from .metrics import METRICS
from .spread import LEVEL, indistinguishability, metric_values

NOT_SPREAD = ("time",)  # wall time says nothing about forgetting
NO_OP = "no-op"
NOTHING_TO_FORGET = "nothing measurable to forget"


def headline_values(tables: Sequence[MetricTable]) -> dict[str, list[float]]:
    """{"metric.key": [value per table]} over the registered metrics' headline keys (time left out)."""
    wanted: set[str] = set()
    for name in METRICS.names():
        if name not in NOT_SPREAD:
            wanted.update(f"{name}.{key}" for key in METRICS.get(name).headline)
    return {key: values for key, values in metric_values(tables).items() if key in wanted}


def table_accuracies(tables: Sequence[MetricTable], key: str) -> np.ndarray | None:
    """(K,) accuracy.`key` of each table, or None when a table lacks it (the final score then skips)."""
    values = [(table.get("accuracy") or {}).get(key) for table in tables]
    if not values or any(value is None or not math.isfinite(value) for value in values):
        return None
    return np.asarray(values, dtype=np.float64)


def pool_of(forget_logits: np.ndarray, tables: Sequence[MetricTable]) -> ModelPool:
    """A ModelPool from (K, n, C) Df logits and the K models' metric tables (retain / test accuracy).
    The test accuracy of a class split is the remaining classes' (as in the Avg. Gap: the forgotten
    class already counts through Df)."""
    if len(tables) != len(forget_logits):
        raise ValueError(f"{len(forget_logits)} models but {len(tables)} metric tables")
    remaining = table_accuracies(tables, "test_remaining")
    test = remaining if remaining is not None else table_accuracies(tables, "test")
    return ModelPool(forget_logits, table_accuracies(tables, "dr"), test)


def pool_scores(labels: np.ndarray, unlearned: ModelPool, retrained: ModelPool,
                settings: EnsembleSettings | None = None) -> dict[str, dict]:
    """`evaluate_ensemble` of the two pools, or every score skipped when a pool is too small."""
    smallest = min(len(unlearned), len(retrained))
    if smallest < MIN_MODELS:
        reason = f"needs at least {MIN_MODELS} models per pool, got {len(unlearned)} and {len(retrained)}"
        return {"results": {}, "skipped": {name: reason for name in ENSEMBLE_METRICS.names()}}
    return evaluate_ensemble(EnsembleOutputs(labels, unlearned, retrained), settings=settings)


def _row(method: str, n_unlearned: int, n_retrains: int, scores: dict, spread: dict, **flags: Any) -> dict:
    if flags.get("no_op"):
        verdict = NO_OP
    elif flags.get("nothing_to_forget"):
        verdict = NOTHING_TO_FORGET
    else:
        verdict = spread["headline"]
    return clean({"method": method, "n_unlearned": n_unlearned, "n_retrains": n_retrains,
                  "scores": scores["results"], "skipped": scores["skipped"], "spread": spread, **flags,
                  "verdict": verdict})


def method_row(method: str, labels: np.ndarray, unlearned: ModelPool, retrained: ModelPool,
               unlearned_tables: Sequence[MetricTable], retrain_tables: Sequence[MetricTable],
               no_op: bool, level: float = LEVEL, settings: EnsembleSettings | None = None) -> dict:
    """A method's K unlearned models against the K Retrains; `no_op`: all are the Original unchanged."""
    spread = indistinguishability(headline_values(unlearned_tables), headline_values(retrain_tables), level)
    return _row(method, len(unlearned), len(retrained), pool_scores(labels, unlearned, retrained, settings),
                spread, no_op=bool(no_op))


def original_row(labels: np.ndarray, original: ModelPool, retrained: ModelPool, original_tables: Sequence[MetricTable],
                 retrain_tables: Sequence[MetricTable], level: float = LEVEL,
                 settings: EnsembleSettings | None = None) -> dict:
    """The Original (usually one model) against the Retrains, and whether anything is measurably forgotten."""
    spread = indistinguishability(headline_values(original_tables), headline_values(retrain_tables), level)
    nothing = spread["n_tested"] > 0 and spread["n_inside"] == spread["n_tested"]
    return _row("original", len(original), len(retrained), pool_scores(labels, original, retrained, settings),
                spread, nothing_to_forget=nothing)


def _subset(pool: ModelPool, rows: slice) -> ModelPool:
    pick = lambda values: None if values is None else values[rows]  # noqa: E731
    return ModelPool(pool.forget_logits[rows], pick(pool.retain_accuracy), pick(pool.test_accuracy))


def retrain_reference_row(labels: np.ndarray, retrained: ModelPool, retrain_tables: Sequence[MetricTable],
                          level: float = LEVEL, settings: EnsembleSettings | None = None) -> dict | None:
    """The first half of the Retrains against the second half (None below 4 Retrains: a half needs
    2 models for the spread test; the scores need `MIN_MODELS` per half, so K >= 6)."""
    half = len(retrained) // 2
    if half < 2:
        return None
    first, second = slice(0, half), slice(half, 2 * half)
    spread = indistinguishability(headline_values(retrain_tables[first]), headline_values(retrain_tables[second]),
                                  level)
    scores = pool_scores(labels, _subset(retrained, first), _subset(retrained, second), settings)
    return _row("retrain", half, half, scores, spread)


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN / inf become None, numpy scalars plain numbers, tuples lists."""
    if isinstance(value, Mapping):
        return {str(key): clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def format_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """Plain-text table of ensemble rows (the columns of the bench report's ensemble table)."""
    header = (f"{'row':<24} {'K':>7} {'F':>6} {'final':>6} {'U-LiRA AUC':>10} {'TPR@1%':>7} {'TPR@0.1%':>8} "
              f"{'informed':>8}  verdict")
    lines = [header, "-" * len(header)]
    for row in rows:
        scores = row.get("scores") or {}
        get = lambda metric, key: (scores.get(metric) or {}).get(key)  # noqa: E731
        cells = [get("forgetting_quality", "forgetting_quality"), get("forgetting_quality", "final_score"),
                 get("ulira", "auc"), get("ulira", "tpr_at_1pct_fpr"), get("ulira", "tpr_at_0_1pct_fpr"),
                 get("informed_attack", "balanced_accuracy")]
        text = ["NA" if value is None else f"{value:.3f}" for value in cells]
        size = f"{row['n_unlearned']}/{row['n_retrains']}"
        lines.append(f"{row['method']:<24} {size:>7} {text[0]:>6} {text[1]:>6} {text[2]:>10} {text[3]:>7} "
                     f"{text[4]:>8} {text[5]:>8}  {row['verdict']}")
    return "\n".join(lines)
