"""The paper tables' material: every finished evaluation flattened to an EvalRow, and the rows
pooled into one Table per (task, corpus, kind of Retrain), each cell a mean ± std (Cell)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ...evaluation.gap import gap_of_means
from ..plan import describe_forget_split
from ..store import ResultStore, RunRecord
from .layout import COLUMN_BY_KEY, COLUMNS, GAP_OF_MEANS, SCENARIO_TITLES, TASK_TITLES, method_order, value_at


@dataclass(frozen=True)
class EvalRow:
    """One finished evaluation, flattened: its grid coordinates and its column values."""

    task: str
    corpus: str
    model: str
    seed: int
    scenario: str
    ratio: float | None
    method: str
    values: dict[str, float | None]
    split: str = ""
    metrics: Mapping[str, Any] = field(default_factory=dict)  # the evaluation's metric table
    retrain_match: str = "epochs"  # how long its Retrain trained (BenchConfig.retrain_match)
    replica: bool = False  # a Retrain of the reference set other than the split's first one
    no_op: bool | None = None  # the unlearned model is the Original unchanged (None: not checked)
    schedule: "Schedule | None" = None  # steps taken and planned (unlearned models only)

    @property
    def cell(self) -> tuple:
        """The runs a method's row and Retrain's row share: same backbone, seed, forget split and
        kind of Retrain (a folder may hold both kinds)."""
        return self.model, self.seed, self.split, self.retrain_match


@dataclass(frozen=True)
class Schedule:
    """How far an unlearning run got: optimiser steps taken, those its schedule plans (None when
    the run did not record them) and whether a budget (time or step cap) stopped it."""

    steps: int
    planned: int | None
    capped: bool

    @classmethod
    def of(cls, metrics: Mapping[str, Any]) -> "Schedule | None":
        """From an unlearn record's metrics (UnlearnResult.to_metadata); None without a step count."""
        if metrics.get("steps") is None:
            return None
        planned = metrics.get("planned_steps")
        return cls(int(metrics["steps"]), None if planned is None else int(planned),
                   bool(metrics.get("budget_exhausted")))


def _span(values: Sequence[int]) -> str:
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}-{max(values)}"


def schedule_text(schedules: Sequence["Schedule | None"]) -> str:
    """The steps cell of a row: "400 of 400" when every run finished its schedule, "capped at 120 of
    400 steps (3 of 4 runs)" when a budget stopped some; "" when no run recorded its steps."""
    known = [schedule for schedule in schedules if schedule is not None]
    if not known:
        return ""
    capped = [schedule for schedule in known if schedule.capped]
    shown = capped or known
    steps = _span([schedule.steps for schedule in shown])
    planned = [schedule.planned for schedule in shown if schedule.planned is not None]
    of = f" of {_span(planned)}" if planned else ""
    if not capped:
        return f"{steps}{of}"
    runs = f" ({len(capped)} of {len(known)} runs)" if len(capped) < len(known) else ""
    return f"capped at {steps}{of} steps{runs}"


@dataclass
class Cell:
    """Mean, standard deviation (ddof = 1; None for fewer than two values) and count of a column."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> "Cell":
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return cls(None, None, 0)
        std = statistics.stdev(finite) if len(finite) > 1 else None
        return cls(statistics.fmean(finite), std, len(finite))

    def format(self, digits: int) -> str:
        if self.mean is None:
            return "NA"
        text = f"{self.mean:.{digits}f}"
        return text if self.std is None else f"{text} ± {self.std:.{digits}f}"


@dataclass
class TableRow:
    scenario: str
    method: str
    cells: dict[str, Cell]
    runs: int
    no_op: bool = False  # every model of the row is the Original unchanged
    schedule: str = ""  # schedule_text of its unlearning runs


@dataclass
class Table:
    """The paper-style table of one (task, corpus)."""

    task: str
    corpus: str
    rows: list[TableRow] = field(default_factory=list)
    models: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    ratios: tuple[float, ...] = ()
    retrain_matches: tuple[str, ...] = ("epochs",)
    original_fit: str = ""  # how well the Originals fit their training data (see original_fit_line)

    @property
    def title(self) -> str:
        against = "" if self.retrain_matches == ("epochs",) else ", against the step-matched Retrain"
        return f"{TASK_TITLES.get(self.task, self.task)} ({self.task}) on {self.corpus}{against}"


def variant_label(method: str, overrides: Mapping[str, Any] | None) -> str:
    """The method's name, with its overrides when it ran with any: "calibrated [heldout_warp=0.2]"."""
    if not overrides:
        return method
    return f"{method} [{', '.join(f'{key}={value}' for key, value in sorted(overrides.items()))}]"


@dataclass(frozen=True)
class RunLookup:
    """Per-store lookups of what an evaluation record does not say itself, read once per store:
    the overrides its unlearning run used and how long its Retrain trained, so that two
    configurations of a method, or runs against two kinds of Retrain, are never pooled."""

    overrides: Mapping[str, dict[str, Any]]  # unlearning run key -> its method overrides
    retrain_kinds: Mapping[str, str]  # Retrain run key -> BenchConfig.retrain_match
    schedules: Mapping[str, Schedule | None] = field(default_factory=dict)  # unlearning run key -> its steps

    @classmethod
    def of(cls, store: ResultStore) -> "RunLookup":
        unlearned = store.records(stage="unlearn")
        overrides = {record.key: dict((record.config.get("hyper") or {}).get("overrides") or {})
                     for record in unlearned}
        kinds = {record.key: record.config.get("train", {}).get("match", "epochs")
                 for record in store.records(stage="retrain")}
        schedules = {record.key: Schedule.of(record.metrics or {}) for record in unlearned}
        return cls(overrides, kinds, schedules)

    def schedule_of(self, evaluation: RunRecord) -> Schedule | None:
        """The steps of the unlearning run an evaluation scored (None for the references)."""
        return self.schedules.get(evaluation.config.get("subject"))

    def overrides_of(self, evaluation: RunRecord) -> dict[str, Any]:
        """{} for defaults, tuned runs and the references."""
        return self.overrides.get(evaluation.config.get("subject"), {})

    def retrain_kind_of(self, evaluation: RunRecord) -> str:
        return self.retrain_kinds.get(evaluation.config.get("retrain"), "epochs")


def eval_row(record: RunRecord, retrain_match: str = "epochs", overrides: Mapping[str, Any] | None = None,
             schedule: Schedule | None = None) -> EvalRow:
    """Flatten one "evaluate" record, its method named with `overrides` (`variant_label`).
    Retrain's time is its training time (ratio 1 by definition)."""
    config, metrics = record.config, record.metrics or {}
    split = config["split"]
    values = {column.key: value_at(metrics, column.path) for column in COLUMNS}
    values = {key: (None if v is None else v * COLUMN_BY_KEY[key].scale) for key, v in values.items()}
    return EvalRow(
        task=config["task"], corpus=config["corpus"], model=config["model"], seed=int(config["seed"]),
        scenario=split["scenario"], ratio=split.get("ratio"), method=variant_label(config["method"], overrides),
        values=values, split=describe_forget_split(split), metrics=metrics.get("metrics") or {}, retrain_match=retrain_match,
        replica=config["method"] == "retrain" and config.get("subject", config.get("retrain")) != config.get("retrain"),
        no_op=metrics.get("no_op"), schedule=schedule,
    )


def collect_rows(store: ResultStore) -> list[EvalRow]:
    """Every finished evaluation of the test splits in the database."""
    lookup = RunLookup.of(store)
    return [eval_row(record, lookup.retrain_kind_of(record), lookup.overrides_of(record),
                     lookup.schedule_of(record))
            for record in store.records(stage="evaluate", status="done")
            if record.config.get("split", {}).get("role", "test") == "test"]


def aggregate(rows: Sequence[EvalRow]) -> list[Table]:
    """One Table per (task, corpus, kind of Retrain); each row pools seeds, ratios and backbones.
    Runs scored against a step-matched Retrain get a table of their own: their gaps measure
    distance to another model."""
    grouped: dict[tuple[str, str, str], list[EvalRow]] = defaultdict(list)
    for row in rows:
        grouped[(row.task, row.corpus, row.retrain_match)].append(row)
    tables = []
    for (task, corpus, _), members in sorted(grouped.items()):
        table = Table(task, corpus, models=tuple(sorted({r.model for r in members})),
                      seeds=tuple(sorted({r.seed for r in members})),
                      ratios=tuple(sorted({r.ratio for r in members if r.ratio is not None})),
                      retrain_matches=tuple(sorted({r.retrain_match for r in members})))
        for scenario in [s for s in SCENARIO_TITLES if any(r.scenario == s for r in members)]:
            in_scenario = [r for r in members if r.scenario == scenario]
            retrain_by_cell = {r.cell: r for r in in_scenario if r.method == "retrain" and not r.replica}
            for method in method_order(r.method for r in in_scenario):
                chosen = [r for r in in_scenario if r.method == method]
                cells = {c.key: Cell.of(r.values[c.key] for r in chosen) for c in COLUMNS}
                cells[GAP_OF_MEANS.key] = _gap_of_means(chosen, retrain_by_cell)
                no_op = bool(chosen) and all(r.no_op for r in chosen)
                schedule = schedule_text([r.schedule for r in chosen])
                table.rows.append(TableRow(scenario, method, cells, len(chosen), no_op, schedule))
        tables.append(table)
    return tables


def _gap_of_means(chosen: Sequence[EvalRow], retrain_by_cell: Mapping[tuple, EvalRow]) -> Cell:
    """Avg. Gap between the mean metrics of `chosen` and of Retrain over the runs both have."""
    pairs = [(row.metrics, retrain_by_cell[row.cell].metrics)
             for row in chosen if row.cell in retrain_by_cell and row.metrics]
    if not pairs:
        return Cell(None, None, 0)
    return Cell(gap_of_means(pairs)["avg_gap_pp"], None, len(pairs))


def original_fit_line(store: ResultStore, task: str, corpus: str) -> str:
    """One line on the Originals of (task, corpus): train and test accuracy and their gap.

    The train - test gap is what a membership attack can find and an unlearning method has to
    remove: an Original that did not memorise (a gap near 0) leaves a method little to forget,
    and then its own Avg. Gap, the "do nothing" row, is the figure every method has to beat.
    """
    fits = [r.metrics for r in store.records(stage="original", status="done")
            if (r.config.get("task"), r.config.get("corpus")) == (task, corpus) and r.metrics]  # fmt: skip
    if not fits:
        return ""
    cells = {key: Cell.of(100 * m[key] for m in fits if m.get(key) is not None)
             for key in ("train_accuracy", "test_accuracy")}  # fmt: skip
    gap = Cell.of(100 * (m["train_accuracy"] - m["test_accuracy"]) for m in fits
                  if m.get("train_accuracy") is not None and m.get("test_accuracy") is not None)  # fmt: skip
    return (f"Originals ({len(fits)}): train accuracy {cells['train_accuracy'].format(1)} %, test "
            f"{cells['test_accuracy'].format(1)} %, train − test gap {gap.format(1)} pp.")


def attach_original_fits(tables: Sequence[Table], store: ResultStore) -> None:
    """Fill each table's `original_fit` line from the Originals in `store`."""
    for table in tables:
        table.original_fit = original_fit_line(store, table.task, table.corpus)
