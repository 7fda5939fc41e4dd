"""The ensemble stage: one row of a forget split scored against the split's K Retrains.

A run of this stage exists for every forget split of a grid with `retrain_seeds` >= 2, once per method
(its `unlearn_seeds` unlearned models), once for the Original and once for the Retrain-vs-Retrain
reference (config "method" original / retrain; "subjects" the models of the row, "retrains" the
split's reference set, "evaluations" / "retrain_evaluations" their evaluate runs). It reads the
per-model metric tables of those evaluations from its inputs (nothing is re-scored), runs every
model once on Df for the per-example scores, and writes RUN_DIR/ensemble/<key>/summary.json with
the row of `evaluation.retrain_ensemble` (scores, spread, flags, verdict).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from .executors import Job, StageResult
from .job_inputs import (
    configure_process,
    forget_split_of,
    input_artefact,
    load_job_corpus,
    load_job_features,
    load_model,
    summary_result,
)


def _tables(job: Job, keys: Sequence[str]) -> list[dict]:
    """The scored model's metric table of each evaluate run in `keys`."""
    return [job.input(key)["metrics"]["metrics"] for key in keys]


def _logits(job: Job, keys: Sequence[str], forget, original=None) -> tuple[np.ndarray, list[bool]]:
    """(K, n, C) Df logits of the checkpoints of `keys`, loaded one at a time, and for each whether
    its weights are the Original's unchanged (False when no `original` is given)."""
    from ..evaluation import is_no_op
    from ..training.inference import predict_logits

    logits, unchanged = [], []
    for key in keys:
        model, _ = load_model(input_artefact(job, key, "checkpoint"), job.extra.get("device"))
        logits.append(predict_logits(model, forget))
        unchanged.append(original is not None and is_no_op(model, original))
        del model
    return np.stack(logits), unchanged


def ensemble_row(job: Job, labels: np.ndarray, forget) -> dict[str, Any]:
    """The row this run scores (see `evaluation.retrain_ensemble`)."""
    from ..evaluation import retrain_ensemble as rows

    config = job.config
    retrain_tables = _tables(job, config["retrain_evaluations"])
    retrained = rows.pool_of(_logits(job, config["retrains"], forget)[0], retrain_tables)
    tables = _tables(job, config["evaluations"])
    if config["method"] == "retrain":
        row = rows.retrain_reference_row(labels, retrained, retrain_tables)
        if row is None:
            raise ValueError(f"the Retrain-vs-Retrain row needs at least 4 Retrains, got {len(retrained)}")
        return row
    if config["method"] == "original":
        original = rows.pool_of(_logits(job, config["subjects"], forget)[0], tables)
        return rows.original_row(labels, original, retrained, tables, retrain_tables)
    original_model, _ = load_model(input_artefact(job, config["original"], "checkpoint"), job.extra.get("device"))
    logits, unchanged = _logits(job, config["subjects"], forget, original_model)
    return rows.method_row(config["method"], labels, rows.pool_of(logits, tables), retrained, tables, retrain_tables,
                           no_op=all(unchanged))


def run_ensemble(job: Job) -> StageResult:
    """Score one row of the split against its Retrains; write summary.json."""
    from ..evaluation.per_example import view_labels
    from ..training.data import ArrayData

    configure_process(job)
    start = time.perf_counter()
    corpus = load_job_corpus(job)
    forget_split = forget_split_of(job, corpus)
    features, _ = load_job_features(job, corpus, job.config["model"])
    forget = ArrayData(features, corpus.labels, forget_split.forget_indices(corpus))
    row = ensemble_row(job, view_labels(forget), forget)
    return summary_result(job, row, time.perf_counter() - start)
