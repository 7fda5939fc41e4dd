"""The driver: runs a plan on an executor, resumes, records every outcome in the database.

`run_grid` is the only writer of the results database. At start it turns rows left "running"
by a crash back into pending runs, re-runs "done" rows whose artefacts went missing, and (with
`retry_failed`) failed rows; finished runs are skipped. It then submits every run whose inputs
are done, as many at once as the executor holds, and records each outcome as it arrives:
"done" only after the stage has written its artefacts, "failed" with the error text otherwise,
in which case the runs that needed it are recorded as failed ("blocked") and the rest of the
grid goes on.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..io import atomic_write_json, clean_stale_temporaries
from .executors import Executor, InProcessExecutor, Job, RunOutcome, StageFunction
from .plan import STAGES, Plan, Run, TuneGroup
from .report import PLOTS_FOLDER, REPORT_FOLDER
from .store import ResultStore

FINISHED = ("done", "failed")
TUNING_FOLDER = "tuning"  # RUN_DIR/tuning/<group>.json: one file per tuning choice


@dataclass
class GridSummary:
    """What one call of `run_grid` did."""

    executed: list[str] = field(default_factory=list)  # keys run now, in completion order
    failed: list[str] = field(default_factory=list)  # keys that failed now (blocked included)
    skipped: int = 0  # runs already finished before this call
    recovered: list[str] = field(default_factory=list)  # "running" rows found at start (crash)

    @property
    def ok(self) -> bool:
        return not self.failed


def _default_stages() -> Mapping[str, StageFunction]:
    from .stages import STAGE_FUNCTIONS

    return STAGE_FUNCTIONS


class _Grid:
    """State of one driver loop over a plan."""

    def __init__(self, plan: Plan, run_dir: Path, store: ResultStore, stages: Mapping[str, StageFunction],
                 cache_dir: str | None, extra: dict[str, Any]):
        self.plan = plan
        self.run_dir = run_dir
        self.store = store
        self.stages = stages
        self.cache_dir = cache_dir
        self.extra = extra
        self.status = {key: status for key, status in store.statuses().items() if key in plan.by_key}
        self.summary = GridSummary()
        self.tune_runs = {key: group for group in plan.tune_groups.values() for key in group.run_keys}

    # -- readiness -------------------------------------------------------------------------------

    def _dep_state(self, run: Run, dep: str) -> str:
        """"ready", "wait" or "blocked" for one dependency of `run`."""
        status = self.status.get(dep, "pending")
        if dep in self.tune_runs and run.stage == "unlearn":
            # A tuned run needs every grid point finished and a choice made; failed points are
            # simply not candidates.
            group = self.tune_runs[dep]
            if any(self.status.get(key) not in FINISHED for key in group.run_keys):
                return "wait"
            return "ready" if self._tuning_choice(group) is not None else "blocked"
        if status == "done":
            return "ready"
        return "blocked" if status == "failed" else "wait"

    def state(self, run: Run) -> str:
        states = {self._dep_state(run, dep) for dep in run.deps}
        if "blocked" in states:
            return "blocked"
        return "wait" if "wait" in states else "ready"

    def blocking_dep(self, run: Run) -> str:
        for dep in run.deps:
            if self._dep_state(run, dep) == "blocked":
                parent = self.plan.by_key.get(dep)
                return f"blocked: dependency {parent.label if parent else dep[:12]} ({dep[:12]}) failed"
        return "blocked"

    # -- tuning ----------------------------------------------------------------------------------

    def _tuning_choice(self, group: TuneGroup) -> dict[str, Any] | None:
        stored = self.store.tuning(group.key)
        if stored is not None:
            return stored["choice"]
        if any(self.status.get(key) not in FINISHED for key in group.run_keys):
            return None
        from .tuning import select_hyperparameters

        choice, provenance = select_hyperparameters(group, self.store, self.plan)
        if choice is None:
            return None
        self.store.save_tuning(group, choice, provenance)
        name = f"{group.task}-{group.model}-{group.scenario}-{group.method}-{group.key[:8]}.json".replace("/", "_")
        atomic_write_json(self.run_dir / TUNING_FOLDER / name, {"group_key": group.key, "choice": choice, **provenance})
        return choice

    # -- building jobs ---------------------------------------------------------------------------

    def job_for(self, run: Run) -> Job:
        inputs = {}
        for dep in run.deps:
            record = self.store.get(dep)
            if record is None or record.status != "done":
                continue
            inputs[dep] = {
                "stage": record.stage,
                "config": record.config,
                "artefacts": {name: str(self.run_dir / path) for name, path in record.artefacts.items()},
                "seconds": record.seconds,
                "metrics": record.metrics,
            }
        extra = dict(self.extra)
        if run.stage in ("unlearn", "tune"):
            extra["budget_seconds"] = self._budget(run, inputs)
            extra["budget_steps"] = run.config.get("budget", {}).get("cap_steps")
        hyper = run.config.get("hyper", {})
        if "tuned" in hyper:
            extra["overrides"] = self._tuning_choice(self.plan.tune_groups[hyper["tuned"]])["overrides"]
        return Job(run.key, run.stage, run.config, str(self.run_dir), self.cache_dir, inputs, extra)

    @staticmethod
    def _budget(run: Run, inputs: dict[str, dict[str, Any]]) -> float | None:
        """The unlearning time budget: the matching Retrain's wall time x factor, capped; None
        under a step cap, which replaces it."""
        retrain_seconds = inputs[run.config["retrain"]]["seconds"]
        budget = run.config.get("budget", {})
        if budget.get("cap_steps") is not None:
            return None
        seconds = None if retrain_seconds is None else retrain_seconds * budget.get("factor", 1.0)
        cap = budget.get("cap_seconds")
        if cap is not None:
            seconds = cap if seconds is None else min(seconds, cap)
        return seconds

    # -- recording -------------------------------------------------------------------------------

    def record(self, run: Run, outcome: RunOutcome) -> None:
        timings = {"worker_wall_seconds": round(outcome.wall_seconds, 3),
                   "worker_cpu_seconds": round(outcome.cpu_seconds, 3)}
        if outcome.ok and outcome.result is not None:
            result = outcome.result
            missing = [p for p in result.artefacts.values() if not (self.run_dir / p).exists()]
            if missing:
                outcome = RunOutcome(run.key, False, error=f"artefacts missing after the run: {', '.join(missing)}")
            else:
                self.store.mark_done(run, result.metrics, result.artefacts, result.seconds,
                                     {**result.timings, **timings})
                self.status[run.key] = "done"
                self.summary.executed.append(run.key)
                return
        self.store.mark_failed(run, outcome.error or "failed", timings)
        self.status[run.key] = "failed"
        self.summary.executed.append(run.key)
        self.summary.failed.append(run.key)

    def block(self, run: Run) -> None:
        self.store.mark_failed(run, self.blocking_dep(run))
        self.status[run.key] = "failed"
        self.summary.failed.append(run.key)


def prepare_run_dir(plan: Plan, store: ResultStore, run_dir: Path, retry_failed: bool) -> GridSummary:
    """Rows for every run; crashed, incomplete and (optionally) failed runs back to pending."""
    # Every folder the driver or the report writes into: a kill mid-write leaves `.tmp-*` there.
    owned = [run_dir, *(run_dir / stage for stage in STAGES), run_dir / TUNING_FOLDER,
             run_dir / REPORT_FOLDER, run_dir / REPORT_FOLDER / PLOTS_FOLDER]
    for folder in owned:
        clean_stale_temporaries(folder)
    store.ensure(plan.runs)
    summary = GridSummary(recovered=store.recover_interrupted())
    incomplete = [
        record.key for record in store.records(status="done")
        if record.key in plan.by_key and any(not (run_dir / p).exists() for p in record.artefacts.values())
    ]
    store.reset(incomplete)
    if retry_failed:
        store.reset([r.key for r in store.records(status="failed") if r.key in plan.by_key])
    return summary


def run_grid(
    plan: Plan,
    run_dir: str | Path,
    executor: Executor | None = None,
    stages: Mapping[str, StageFunction] | None = None,
    retry_failed: bool = False,
    cache_dir: str | Path | None = None,
    extra: Mapping[str, Any] | None = None,
    progress: bool = True,
    on_outcome: Callable[[Run, RunOutcome], None] | None = None,
) -> GridSummary:
    """Run every unfinished run of `plan`, recording outcomes in RUN_DIR/runs.sqlite.

    `stages` maps stage names to stage functions (default: `stages.STAGE_FUNCTIONS`); `extra`
    is passed to every job (e.g. {"device": "cpu"}). Returns what was executed and what failed.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir).resolve()
    executor = executor or InProcessExecutor()
    stages = stages or _default_stages()
    with ResultStore.in_folder(run_dir) as store:
        summary = prepare_run_dir(plan, store, run_dir, retry_failed)
        grid = _Grid(plan, run_dir, store, stages, None if cache_dir is None else str(cache_dir), dict(extra or {}))
        grid.summary.recovered = summary.recovered
        todo = [run for run in plan.runs if grid.status.get(run.key) not in FINISHED]
        grid.summary.skipped = len(plan.runs) - len(todo)
        bar = tqdm(total=len(todo), desc="bench", unit="run", disable=not progress, file=sys.stderr)
        in_flight: dict[Any, Run] = {}
        try:
            while todo or in_flight:
                todo = _submit_ready(grid, executor, todo, in_flight, bar)
                if not in_flight:
                    if todo:  # nothing runnable and nothing running: cannot happen with a valid plan
                        raise RuntimeError(f"{len(todo)} runs can never start (first: {todo[0].label})")
                    break
                for handle, outcome in executor.wait(list(in_flight)):
                    run = in_flight.pop(handle)
                    grid.record(run, outcome)
                    bar.update(1)
                    if on_outcome is not None:
                        on_outcome(run, outcome)
        finally:
            bar.close()
            executor.close()
        return grid.summary


def _submit_ready(grid: _Grid, executor: Executor, todo: list[Run], in_flight: dict[Any, Run], bar: Any) -> list[Run]:
    """Submit ready runs up to the executor's capacity, block those whose inputs failed; returns the rest."""
    remaining = []
    for run in todo:
        state = grid.state(run)
        if state == "blocked":
            grid.block(run)
            bar.update(1)
        elif state == "ready" and len(in_flight) < executor.capacity:
            grid.store.mark_running(run)
            grid.status[run.key] = "running"
            bar.set_postfix_str(run.label[:60], refresh=False)
            in_flight[executor.submit(grid.stages[run.stage], grid.job_for(run))] = run
        else:
            remaining.append(run)
    return remaining

