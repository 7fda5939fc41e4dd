"""Hyper-parameter selection for `--tune`, on validation data only.

For each (task, backbone, scenario, method) the grid runs every point of a small documented
grid (`plan.tune_points`: the method's default learning rate times each of `tune_lr_scales`,
its default epochs times each of `tune_epoch_scales`) on a *validation* forget split: a second
forget set drawn with its own seed, with its own Retrain reference, evaluated with the corpus'
validation set standing in for Dtest. The point with the smallest Avg. Gap to that Retrain is
chosen among the points that changed the model: a point that returned the Original unchanged is a
no-op, never a win (it is chosen only when every point was one, and the provenance says so), the
rule `forget --method auto`'s choice table follows too. Test data never enters the choice. The
choice and every candidate's score are stored in the database's `tuning` table and as JSON under
RUN_DIR/tuning/.
"""

from __future__ import annotations

from typing import Any

from .plan import Plan, TuneGroup
from .store import ResultStore

CRITERION = (
    "lowest Avg. Gap to Retrain (mean |metric - Retrain metric| over Df, Dr, Dvalidation accuracy and MIA) "
    "on a validation forget split with its own Retrain; the validation set stands in for Dtest"
)


def select_hyperparameters(group: TuneGroup, store: ResultStore, plan: Plan) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(choice, provenance) for a finished tuning group; choice is None when every point failed.

    choice = {"overrides": the method overrides to use, "point": the grid point, "avg_gap": score,
    "run": the tune run's key}. Ties go to the earlier grid point (smaller lr, fewer epochs first);
    points that returned the Original unchanged are candidates only when every point did.
    """
    candidates = []
    for key, point in zip(group.run_keys, group.points):
        record = store.get(key)
        entry: dict[str, Any] = {"run": key, "point": point, "status": record.status if record else "missing"}
        if record is not None and record.status == "done" and record.metrics:
            entry["avg_gap"] = record.metrics.get("avg_gap")
            entry["overrides"] = record.metrics.get("overrides", {})
            entry["no_op"] = bool(record.metrics.get("no_op", False))
        candidates.append(entry)
    scored = [c for c in candidates if c.get("avg_gap") is not None]
    changed = [c for c in scored if not c["no_op"]]
    first_run = plan.by_key.get(group.run_keys[0])
    provenance = {
        "criterion": CRITERION,
        "task": group.task,
        "corpus": group.corpus,
        "model": group.model,
        "scenario": group.scenario,
        "method": group.method,
        "validation_split": first_run.config["split"] if first_run else None,
        "candidates": candidates,
    }
    if not scored:
        return None, provenance
    best = min(changed or scored, key=lambda c: c["avg_gap"])
    choice = {"overrides": best["overrides"], "point": best["point"], "avg_gap": best["avg_gap"], "run": best["run"],
              "no_op": best["no_op"]}
    return choice, provenance
