"""A `--method auto` choice table built from a benchmark run folder's results.

`choice_table_from_runs` ranks, per (task, scenario), every finished method configuration by its
mean Avg. Gap to Retrain among those within the time limit, and returns a table in the shipped
`forgetting/method_choice.json` format, which `forgetting.choice.choose_method` reads.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..forgetting.choice import CHOICE_FORMAT_VERSION, REGENERATE_HINT

REFERENCE_METHODS = ("original", "retrain")  # benchmark rows that are references, not choices
DEFAULT_MAX_TIME_RATIO = 1.0  # "within the time limit": no slower than retraining


def _mean(values: Iterable[float | None]) -> float | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return statistics.fmean(finite) if finite else None


def _candidate_rows(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(one row per finished test-split evaluation of an unlearning method, the grid's config)."""
    from .report import EvaluationContext, variant_label
    from .store import ResultStore

    try:
        store = ResultStore.existing(run_dir)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--auto-from: {error}") from None
    with store:
        records = store.records(stage="evaluate", status="done")
        context = EvaluationContext.of(store)
        grid = store.get_meta("config", {}) or {}
    if any(context.retrain_kind_of(record) != "steps" for record in records):
        # Gaps to two kinds of Retrain are not comparable: rank against the paper's kind, unless
        # the folder holds only step-matched references.
        records = [record for record in records if context.retrain_kind_of(record) != "steps"]
    rows = []
    for record in records:
        config, metrics = record.config, record.metrics or {}
        split = config.get("split") or {}
        if split.get("role", "test") != "test" or config.get("method") in REFERENCE_METHODS:
            continue
        method, overrides = config["method"], context.overrides_of(record)
        rows.append({
            "task": config.get("task"), "scenario": split.get("scenario"), "method": method, "overrides": overrides,
            "variant": variant_label(method, overrides),
            "model": config.get("model"), "corpus": config.get("corpus"), "avg_gap_pp": metrics.get("avg_gap_pp"),
            "time_ratio": ((metrics.get("metrics") or {}).get("time") or {}).get("ratio"),
        })  # fmt: skip
    return rows, grid


def _rank(rows: Sequence[Mapping[str, Any]], max_time_ratio: float) -> dict[str, Any] | None:
    """Per method configuration (`variant`): mean Avg. Gap and time ratio; the best within the time
    limit, with the overrides it ran with when it had any."""
    candidates = {}
    for variant in sorted({row["variant"] for row in rows}):
        mine = [row for row in rows if row["variant"] == variant]
        gap, ratio = _mean(r["avg_gap_pp"] for r in mine), _mean(r["time_ratio"] for r in mine)
        candidates[variant] = {
            "avg_gap_pp": gap, "time_ratio": ratio, "runs": len(mine),
            "within_time_limit": ratio is None or ratio <= max_time_ratio,
        }  # fmt: skip
    eligible = [(c["avg_gap_pp"], c["time_ratio"] or 0.0, v) for v, c in candidates.items()
                if c["within_time_limit"] and c["avg_gap_pp"] is not None]
    if not eligible:
        return None
    gap, _, best = min(eligible)
    chosen = next(row for row in rows if row["variant"] == best)
    entry = {"method": chosen["method"], "avg_gap_pp": gap, "time_ratio": candidates[best]["time_ratio"],
             "runs": candidates[best]["runs"], "candidates": candidates}
    if chosen["overrides"]:
        entry["overrides"] = chosen["overrides"]
    return entry


def choice_table_from_runs(
    run_dir: str | Path, max_time_ratio: float = DEFAULT_MAX_TIME_RATIO, model: str | None = None
) -> dict[str, Any]:
    """A method-choice table (the shipped file's format) from a benchmark run folder.

    For every (task, scenario) with finished evaluations: the method with the lowest mean Avg.
    Gap to Retrain among those whose mean time / Retrain time is at most `max_time_ratio`
    (References Original and Retrain are not candidates). Each configuration of a method
    (`method_overrides`) is its own candidate, and the chosen one's overrides come with it. Runs
    scored against a step-matched Retrain count only in a folder that has no other kind. With
    `model`, only that backbone's runs count when the folder has any for the task.
    """
    run_dir = Path(run_dir).expanduser()
    rows, grid = _candidate_rows(run_dir)
    choices: dict[str, dict[str, Any]] = {}
    for task in sorted({row["task"] for row in rows}):
        in_task = [row for row in rows if row["task"] == task]
        if model is not None and any(row["model"] == model for row in in_task):
            in_task = [row for row in in_task if row["model"] == model]
        for scenario in sorted({row["scenario"] for row in in_task}):
            best = _rank([row for row in in_task if row["scenario"] == scenario], max_time_ratio)
            if best is not None:
                best["models"] = sorted({row["model"] for row in in_task if row["scenario"] == scenario})
                choices.setdefault(task, {})[scenario] = best
    return {
        "format_version": CHOICE_FORMAT_VERSION,
        "provenance": {
            "status": "benchmark",
            "run_dir": str(run_dir.resolve()),
            "preset": grid.get("name"),
            "data": grid.get("data"),
            "seeds": grid.get("seeds"),
            "ratios": grid.get("ratios"),
            "max_time_ratio": max_time_ratio,
            "model_filter": model,
            "criterion": "lowest mean Avg. Gap to Retrain (pp) among methods whose mean time / Retrain time "
            f"<= {max_time_ratio:g}",
        },
        "regenerate": REGENERATE_HINT,
        "choices": choices,
    }


