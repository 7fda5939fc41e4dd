"""A `--method auto` choice table built from a benchmark run folder's tuning runs.

`choice_table_from_runs` ranks, per (task, scenario), every method configuration the grid's
tuning tried (`--tune`: each method's lr x epochs points on a *validation* forget split with its
own Retrain) by its mean Avg. Gap to that Retrain, among those within the time limit that changed
the model (a configuration that returned the Original unchanged on a tuning split is a no-op, never
a choice: `forget` would end in the verdict "no-op"), and returns
a table in the shipped `forgetting/method_choice.json` format, which
`forgetting.choice.choose_method` reads. The reported test cells never enter the choice: a
table built from the figures it is then judged on would favour whichever method was luckiest on
them.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..forgetting.choice import CHOICE_FORMAT_VERSION, REGENERATE_HINT

DEFAULT_MAX_TIME_RATIO = 1.0  # "within the time limit": no slower than retraining
EXPORT_MAX_TIME_RATIO = 0.1  # --export-choice: forget's default budget, 10 % of the training time


def _mean(values: Iterable[float | None]) -> float | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return statistics.fmean(finite) if finite else None


class NoTuningRuns(ValueError):
    """The folder has results but no finished tuning run to choose from."""


def _candidate_rows(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(one row per finished tuning run of an unlearning method, the grid's config)."""
    from .report import RunLookup, variant_label
    from .store import ResultStore

    try:
        store = ResultStore.existing(run_dir)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--auto-from: {error}") from None
    with store:
        records = store.records(stage="tune", status="done")
        retrain_seconds = {r.key: r.seconds for r in store.records(stage="retrain", status="done")}
        lookup = RunLookup.of(store)
        grid = store.get_meta("config", {}) or {}
    if not records:
        raise NoTuningRuns(
            f"--auto-from {run_dir}: no finished tuning run; the choice is made on validation forget splits, "
            "never on the reported test figures: run the grid with --tune (or --set tune=true) first")
    if any(lookup.retrain_kind_of(record) != "steps" for record in records):
        # Gaps to two kinds of Retrain are not comparable: rank against the paper's kind, unless
        # the folder holds only step-matched references.
        records = [record for record in records if lookup.retrain_kind_of(record) != "steps"]
    rows = []
    for record in records:
        config, summary = record.config, record.metrics or {}
        method, overrides = config["method"], summary.get("overrides") or {}
        reference = retrain_seconds.get(config.get("retrain"))
        seconds = summary.get("unlearn_seconds")
        rows.append({
            "task": config.get("task"), "scenario": (config.get("split") or {}).get("scenario"), "method": method,
            "overrides": overrides, "variant": variant_label(method, overrides),
            "model": config.get("model"), "corpus": config.get("corpus"), "avg_gap_pp": summary.get("avg_gap"),
            "time_ratio": seconds / reference if seconds is not None and reference else None,
            "no_op": summary.get("no_op"),  # None: recorded before tuning runs said
        })  # fmt: skip
    return rows, grid


def _rank(rows: Sequence[Mapping[str, Any]], max_time_ratio: float) -> dict[str, Any] | None:
    """Per method configuration (`variant`): mean Avg. Gap and time ratio; the best within the time
    limit among those that never returned the Original unchanged, with the overrides it ran with
    when it had any."""
    candidates = {}
    for variant in sorted({row["variant"] for row in rows}):
        mine = [row for row in rows if row["variant"] == variant]
        gap, ratio = _mean(r["avg_gap_pp"] for r in mine), _mean(r["time_ratio"] for r in mine)
        candidates[variant] = {
            "avg_gap_pp": gap, "time_ratio": ratio, "runs": len(mine),
            "within_time_limit": ratio is None or ratio <= max_time_ratio,
            "no_op_runs": sum(1 for r in mine if r["no_op"]),
        }  # fmt: skip
    eligible = [(c["avg_gap_pp"], c["time_ratio"] or 0.0, v) for v, c in candidates.items()
                if c["within_time_limit"] and not c["no_op_runs"] and c["avg_gap_pp"] is not None]
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
    """A method-choice table (the shipped file's format) from a benchmark run folder's tuning runs.

    For every (task, scenario) with finished tuning runs: the method configuration (a method at
    one tuning point, with its `method_overrides`) with the lowest mean Avg. Gap to the validation
    split's Retrain among those whose mean time / Retrain time is at most `max_time_ratio` and that
    changed the model on every tuning split; the chosen configuration's overrides come with it.
    Runs scored against a step-matched Retrain
    count only in a folder that has no other kind. With `model`, only that backbone's runs count
    when the folder has any for the task. NoTuningRuns when the folder has none.
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
            "run_dir": str(run_dir),  # as given: a shipped table names no local path
            "preset": grid.get("name"),
            "data": grid.get("data"),
            "seeds": grid.get("seeds"),
            "ratios": grid.get("ratios"),
            "max_time_ratio": max_time_ratio,
            "model_filter": model,
            "source": "tuning runs on validation forget splits (the reported test cells are never read)",
            "criterion": "lowest mean Avg. Gap to Retrain (pp) on the validation forget splits, among method "
            f"configurations whose mean time / Retrain time <= {max_time_ratio:g} and that changed the model on "
            "every tuning split (no no-ops)",
        },
        "regenerate": REGENERATE_HINT,
        "choices": choices,
    }


