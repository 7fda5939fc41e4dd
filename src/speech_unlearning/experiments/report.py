"""Paper-style reports of a run folder: tables per task, CSV, a self-contained HTML page, plots.

Tables follow the paper's Tables 1 and 2: one table per (task, corpus); rows are Original,
Retrain and every method, grouped as sample / class / speaker unlearning; columns are the
accuracy on Df, Dr and Dtest, both membership attacks (each with its direction), the
unlearning time, its ratio to Retrain and the Avg. Gap to Retrain. Every cell is the mean ± the
sample standard deviation (ddof = 1) over all finished evaluations of that row, i.e. over seeds,
forget ratios and backbones, as the paper averages; a cell from a single run shows no ±. The last
column, the Avg. Gap of the means, compares the row's averaged metrics with Retrain's averages
over the same runs (SalUn's convention; see evaluation/gap.py for how the two gaps differ).
A method run with `method_overrides` gets its own row, named with them ("calibrated
[heldout_warp=0.2]"): a folder re-run with new overrides keeps both configurations apart.
A method whose every model is the Original unchanged is marked "(no-op)".

With several Retrains per split (`retrain_seeds`) the Retrain row pools them (its ± is the
Retrain spread) and two more tables follow each paper table: the ensemble scores (forgetting
quality and final score, U-LiRA, the informed attack, "indistinguishable from Retrain on N of M
metrics", the verdict: no-op / nothing measurable to forget) and the Retrain spread per metric
with each row's value and whether it lies inside. ENSEMBLE_NOTES give their sign conventions. A note
names, per method, the attacks its own objective touches (`objective_touches`).

Files written to RUN_DIR/report/: report.md, results.csv (the aggregated tables), runs.csv (one
line per evaluation), ensembles.csv (one line per ensemble row, when there are any), report.html
(inline CSS, plots embedded as base64 PNG) and plots/*.png.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..evaluation.gap import gap_of_means
from ..evaluation.relearn import RelearnConfig
from ..io import atomic_write_bytes, atomic_write_text, clean_stale_temporaries
from .plan import describe_split
from .ranking_report import ranking_markdown
from .store import ResultStore, RunRecord

REPORT_FOLDER = "report"
PLOTS_FOLDER = "plots"  # inside REPORT_FOLDER
SCENARIO_TITLES = {"sample": "Sample unlearning", "class": "Class unlearning", "speaker": "Speaker unlearning"}
REFERENCE_ROWS = ("original", "retrain")
TASK_TITLES = {"kws": "Keyword spotting", "sid": "Speaker identification"}


@dataclass(frozen=True)
class Column:
    """One reported quantity: where it sits in an evaluation's metrics JSON, and its scale."""

    key: str
    title: str
    path: tuple[str, ...]
    scale: float = 1.0
    digits: int = 1


# The relearning attack of the grid's evaluations (the stages use the default settings).
RELEARN = RelearnConfig()

COLUMNS: tuple[Column, ...] = (
    Column("df", "Df acc. (%)", ("metrics", "accuracy", "df"), 100.0),
    Column("dr", "Dr acc. (%)", ("metrics", "accuracy", "dr"), 100.0),
    Column("test", "Dtest acc. (%)", ("metrics", "accuracy", "test"), 100.0),
    # Class unlearning only: the Avg. Gap's utility term (the full-test column stays, as in the paper).
    Column("test_remaining", "Dtest acc., remaining classes (%)", ("metrics", "accuracy", "test_remaining"), 100.0),
    Column("loss_mia", "Loss-MIA acc. (%) [50 = forgotten]", ("metrics", "loss_mia", "accuracy"), 100.0),
    Column("svc_mia", "SVC MIA-efficacy (%) [higher = forgotten]", ("metrics", "svc_mia", "confidence"), 100.0),
    Column("relearn_early", f"Relearn: Df acc. at step {RELEARN.early_at} (%) [target: Retrain]",
           ("metrics", "relearn", "early"), 100.0),
    Column("relearn_end", f"Relearn: Df acc. at step {RELEARN.steps}, the end (%) [target: Retrain]",
           ("metrics", "relearn", "after"), 100.0),
    Column("seconds", "Time (s)", ("metrics", "time", "unlearn_seconds"), 1.0, 2),
    Column("time_ratio", "Time / Retrain", ("metrics", "time", "ratio"), 1.0, 3),
    Column("avg_gap", "Avg. Gap (pp)", ("avg_gap_pp",), 1.0, 2),
)
# Not a per-run value: Avg. Gap between the row's mean metrics and Retrain's, over the same runs.
GAP_OF_MEANS = Column("gap_of_means", "Avg. Gap of the means (pp)", (), 1.0, 2)
TABLE_COLUMNS: tuple[Column, ...] = (*COLUMNS, GAP_OF_MEANS)
COLUMN_BY_KEY = {column.key: column for column in TABLE_COLUMNS}


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


# ---------------------------------------------------------------------------------------------
# Collecting and aggregating


def _lookup(metrics: Mapping[str, Any], path: Sequence[str]) -> float | None:
    value: Any = metrics
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return None if value is None else float(value)


def variant_label(method: str, overrides: Mapping[str, Any] | None) -> str:
    """The method's name, with its overrides when it ran with any: "calibrated [heldout_warp=0.2]"."""
    if not overrides:
        return method
    return f"{method} [{', '.join(f'{key}={value}' for key, value in sorted(overrides.items()))}]"


@dataclass(frozen=True)
class EvaluationContext:
    """What an evaluation record does not say itself, read once per store: the overrides its
    unlearning run used and how long its Retrain trained, so that two configurations of a method,
    or runs against two kinds of Retrain, are never pooled."""

    overrides: Mapping[str, dict[str, Any]]  # unlearning run key -> its method overrides
    retrain_kinds: Mapping[str, str]  # Retrain run key -> BenchConfig.retrain_match
    schedules: Mapping[str, Schedule | None] = field(default_factory=dict)  # unlearning run key -> its steps

    @classmethod
    def of(cls, store: ResultStore) -> "EvaluationContext":
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
    values = {column.key: _lookup(metrics, column.path) for column in COLUMNS}
    values = {key: (None if v is None else v * COLUMN_BY_KEY[key].scale) for key, v in values.items()}
    return EvalRow(
        task=config["task"], corpus=config["corpus"], model=config["model"], seed=int(config["seed"]),
        scenario=split["scenario"], ratio=split.get("ratio"), method=variant_label(config["method"], overrides),
        values=values, split=describe_split(split), metrics=metrics.get("metrics") or {}, retrain_match=retrain_match,
        replica=config["method"] == "retrain" and config.get("subject", config.get("retrain")) != config.get("retrain"),
        no_op=metrics.get("no_op"), schedule=schedule,
    )


def collect_rows(store: ResultStore) -> list[EvalRow]:
    """Every finished evaluation of the test splits in the database."""
    context = EvaluationContext.of(store)
    return [eval_row(record, context.retrain_kind_of(record), context.overrides_of(record),
                     context.schedule_of(record))
            for record in store.records(stage="evaluate", status="done")
            if record.config.get("split", {}).get("role", "test") == "test"]


def _method_order(methods: Iterable[str]) -> list[str]:
    """Original, Retrain, then methods alphabetically with each "+superloss" variant after its base."""
    present = set(methods)
    rest = sorted(present - set(REFERENCE_ROWS), key=lambda name: (name.split("+")[0], name))
    return [name for name in REFERENCE_ROWS if name in present] + rest


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
            for method in _method_order(r.method for r in in_scenario):
                chosen = [r for r in in_scenario if r.method == method]
                cells = {c.key: Cell.of(r.values[c.key] for r in chosen) for c in COLUMNS}
                cells[GAP_OF_MEANS.key] = _gap_of_means(chosen, retrain_by_cell)
                no_op = bool(chosen) and all(r.no_op for r in chosen)
                schedule = schedule_text([r.schedule for r in chosen])
                table.rows.append(TableRow(scenario, method, cells, len(chosen), no_op, schedule))
        tables.append(table)
    return tables


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


def _gap_of_means(chosen: Sequence[EvalRow], retrain_by_cell: Mapping[tuple, EvalRow]) -> Cell:
    """Avg. Gap between the mean metrics of `chosen` and of Retrain over the runs both have."""
    pairs = [(row.metrics, retrain_by_cell[row.cell].metrics)
             for row in chosen if row.cell in retrain_by_cell and row.metrics]
    if not pairs:
        return Cell(None, None, 0)
    return Cell(gap_of_means(pairs)["avg_gap_pp"], None, len(pairs))


def display_name(method: str, no_op: bool = False) -> str:
    name = {"original": "Original", "retrain": "Retrain"}.get(method, method)
    return f"{name} (no-op)" if no_op else name


# ---------------------------------------------------------------------------------------------
# Markdown and CSV


# The text column after the numeric ones: how much of its schedule each unlearning run took.
STEPS_TITLE = "Steps (of planned)"


def _markdown_table(table: Table) -> list[str]:
    header = ["Method", *(c.title for c in TABLE_COLUMNS), STEPS_TITLE, "runs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    current = None
    for row in table.rows:
        if row.scenario != current:
            current = row.scenario
            lines.append(f"| **{SCENARIO_TITLES[current]}** |" + " |" * (len(header) - 1))
        cells = [row.cells[c.key].format(c.digits) for c in TABLE_COLUMNS]
        steps = row.schedule or "—"
        lines.append("| " + " | ".join([display_name(row.method, row.no_op), *cells, steps, str(row.runs)]) + " |")
    return lines


def _table_caption(table: Table) -> str:
    ratios = ", ".join(f"{r * 100:g} %" for r in table.ratios) or "none"
    retrain = " and ".join(RETRAIN_LENGTHS[match] for match in table.retrain_matches)
    return (f"Backbones: {', '.join(table.models)}; seeds: {', '.join(map(str, table.seeds))}; "
            f"sample forget ratios: {ratios}; Retrain: {retrain}. Mean ± std (ddof = 1) over every run in the row.")


# How long the Retrain trained, by BenchConfig.retrain_match.
RETRAIN_LENGTHS = {"epochs": "the Original's epochs on Dr",
                   "steps": "the Original's number of optimiser steps on Dr (retrain_match=steps)"}


READING_NOTES = (
    "Accuracies and MIA values are percentages; Avg. Gap is the mean absolute gap to Retrain in percentage points "
    "over Df, Dr and Dtest accuracy and the SVC MIA-efficacy (the loss attack stands in if SVC is missing). "
    "For class unlearning its Dtest term is the remaining classes' test accuracy (the forgotten class already "
    "counts through Df); the full Dtest column is the paper's figure and is not in that gap.",
    "Avg. Gap (pp) averages each run's gap to the Retrain of the same seed and split, so run-to-run noise adds up; "
    "Avg. Gap of the means compares the row's averaged metrics with Retrain's averages over the same runs "
    "(SalUn's convention, where noise that goes both ways cancels). Two Retrains of the same split already differ "
    "by a few points on small corpora; compare both columns with that floor.",
    "Loss-MIA acc.: a logistic-regression attack on per-sample losses, Df vs matched unseen recordings (for class "
    "unlearning the forgotten class's test recordings, so that membership is not confounded with the class); "
    "50 % means Df looks unseen (forgotten), 100 % means Df is recognised as training data.",
    "SVC MIA-efficacy: the fraction of Df an SVC trained on Dr-vs-Dtest softmax confidences calls non-member; higher "
    "means more of Df looks unseen. For class unlearning its Dtest non-members exclude the forgotten class, which "
    "would teach it the class instead of membership. The Retrain row is the target for both attacks, not an ideal "
    "value.",
    "Sample unlearning: the right Df accuracy is Retrain's (about its test accuracy), not 0.",
    f"Relearn: a copy of the model is fine-tuned on {RELEARN.fraction:.0%} of Df (plus as many Dr rows) for "
    f"{RELEARN.steps} steps; the columns give its accuracy on the rest of Df after {RELEARN.early_at} steps (how "
    "fast it comes back) and at the end of that schedule (how much comes back at all). Lower = harder to relearn; "
    "the Retrain row is the target. NA where the grid ran without the attack.",
    "Time: wall time of the unlearning call (Retrain: its training time); Time / Retrain above 1 means retraining "
    "would have been cheaper. Original has no unlearning time (NA).",
    f"{STEPS_TITLE}: the optimiser steps each unlearning run took and those its documented schedule plans "
    "(its epochs x batches, with the row's settings). 'capped at N of M steps' marks runs a budget stopped first "
    "(the time budget, budget_factor x Retrain's time up to unlearn_cap_seconds, or the step cap unlearn_cap_steps): "
    "such a row measures the method cut short, not as documented; run the grid without the cap for the uncapped "
    "row where they differ.",
)


# Report titles of the attacks a method's objective can touch (evaluation metrics with `reads`).
ATTACK_TITLES = {"loss_mia": "Loss-MIA", "svc_mia": "SVC MIA"}


def objective_touches(method: str) -> tuple[str, ...] | None:
    """The attacks (metric names) that decide on a quantity `method`'s own objective reads
    (`Method.objective_reads` against `Metric.reads`); None for a name that is no registered
    method. `method` may be a row label ("calibrated [heldout_warp=0.2]", "scrub+superloss")."""
    from ..evaluation.metrics import metrics_reading
    from ..methods.base import split_method_name
    from .plan import load_methods

    load_methods()
    try:
        method_class, _ = split_method_name(method.split(" [", 1)[0])
    except (KeyError, ValueError):
        return None
    return tuple(metrics_reading(method_class.objective_reads))


def objective_note(tables: Sequence[Table]) -> str | None:
    """One reading note: which attacks each method of the tables optimises itself, and where the
    independent evidence is."""
    methods = sorted({row.method for table in tables for row in table.rows if row.method not in REFERENCE_ROWS})
    touches = {method: objective_touches(method) for method in methods}
    touched = [f"{method}: {', '.join(ATTACK_TITLES.get(a, a) for a in attacks)}"
               for method, attacks in touches.items() if attacks]
    untouched = [method for method, attacks in touches.items() if attacks == ()]
    if not touched and not untouched:
        return None
    listing = "; ".join(touched + ([f"none: {', '.join(untouched)}"] if untouched else []))
    return ("Attacks a method's own objective touches (each method declares what its objective reads, each attack "
            f"what it decides on): {listing}. An attack that decides on what a method optimises judges it on its "
            "own target: read those cells as the objective met, not as independent evidence of forgetting. U-LiRA, "
            "the forgetting score and the informed attack are the independent evidence: they judge each Df example "
            "against its own distribution over the Retrains, which no method's objective reads.")


def reading_notes(tables: Sequence[Table], ensembles: Sequence["EnsembleTable"] = ()) -> tuple[str, ...]:
    """The notes under the tables: how to read them, which attacks each method optimises, and the
    ensemble tables' sign conventions when there are any."""
    objective = objective_note(tables)
    return READING_NOTES + ((objective,) if objective else ()) + (ENSEMBLE_NOTES if ensembles else ())


def format_markdown(tables: Sequence[Table], failures: Sequence[RunRecord] = (), plots: Sequence[Path] = (),
                    ensembles: Sequence["EnsembleTable"] = (), ranking: Sequence[str] = ()) -> str:
    """The report: the paper-style tables, the ensemble tables, the `ranking` section's lines
    (ranking_report.ranking_markdown), the reading notes, plots and failures."""
    lines = ["# Speech unlearning benchmark", ""]
    if not tables:
        lines += ["No finished evaluation in this run folder yet.", ""]
    for table in tables:
        lines += [f"## {table.title}", "", _table_caption(table), "", *_markdown_table(table), ""]
        if table.original_fit:
            lines += [table.original_fit, ""]
    lines += ensemble_markdown(ensembles)
    lines += list(ranking)
    notes = reading_notes(tables, ensembles)
    lines += ["## How to read the tables", ""] + [f"- {note}" for note in notes] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    if failures:
        lines += [f"## Failed runs ({len(failures)})", ""]
        lines += [f"- `{r.key[:12]}` {r.label}: {(r.error or '').splitlines()[0] if r.error else ''}" for r in failures]
        lines.append("")
    return "\n".join(lines)


def results_csv(tables: Sequence[Table]) -> str:
    """The aggregated tables, one line per row, mean and std columns per quantity."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["task", "corpus", "scenario", "method", "runs",
                     *[f"{c.key}_{stat}" for c in TABLE_COLUMNS for stat in ("mean", "std")], "objective_touches",
                     "steps"])
    for table in tables:
        for row in table.rows:
            values = []
            for column in TABLE_COLUMNS:
                cell = row.cells[column.key]
                values += ["" if cell.mean is None else f"{cell.mean:.6g}", "" if cell.std is None else f"{cell.std:.6g}"]
            touches = None if row.method in REFERENCE_ROWS else objective_touches(row.method)
            writer.writerow([table.task, table.corpus, row.scenario, row.method, row.runs, *values,
                             "" if touches is None else " ".join(touches) or "none", row.schedule])
    return out.getvalue()


def runs_csv(rows: Sequence[EvalRow]) -> str:
    """Every evaluation, one line each (the raw material of the tables)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["task", "corpus", "model", "seed", "scenario", "ratio", "split", "method",
                     *[c.key for c in COLUMNS], "steps", "planned_steps", "capped"])
    for row in rows:
        values = ["" if row.values[c.key] is None else f"{row.values[c.key]:.6g}" for c in COLUMNS]
        schedule = row.schedule
        steps = ["", "", ""] if schedule is None else [
            schedule.steps, "" if schedule.planned is None else schedule.planned, int(schedule.capped)]
        writer.writerow([row.task, row.corpus, row.model, row.seed, row.scenario,
                         "" if row.ratio is None else row.ratio, row.split, row.method, *values, *steps])
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# Plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(figure: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _mean(rows: Iterable[EvalRow], key: str) -> tuple[float | None, float | None]:
    cell = Cell.of(r.values[key] for r in rows)
    return cell.mean, (cell.std or 0.0)


def plot_forgetting_vs_utility(rows: Sequence[EvalRow], table: Table, folder: Path) -> list[Path]:
    """Per scenario: Dtest accuracy (utility) against Df accuracy (forgetting), Retrain marked."""
    plt = _pyplot()
    scenarios = [s for s in SCENARIO_TITLES if any(r.scenario == s for r in rows)]
    figure, axes = plt.subplots(1, len(scenarios), figsize=(5.4 * len(scenarios), 4.6), squeeze=False,
                                constrained_layout=True)
    for axis, scenario in zip(axes[0], scenarios):
        chosen = [r for r in rows if r.scenario == scenario]
        for method in _method_order(r.method for r in chosen):
            mine = [r for r in chosen if r.method == method]
            (x, dx), (y, dy) = _mean(mine, "test"), _mean(mine, "df")
            if x is None or y is None:
                continue
            style = {"retrain": dict(marker="*", s=260, color="black", zorder=5),
                     "original": dict(marker="s", s=80, color="grey", zorder=4)}.get(method, dict(marker="o", s=50))
            axis.errorbar(x, y, xerr=dx, yerr=dy, fmt="none", ecolor="lightgrey", zorder=1)
            axis.scatter([x], [y], label=display_name(method), **style)
        axis.set_xlabel("Dtest accuracy (%)  [utility, higher = better]")
        axis.set_ylabel("Df accuracy (%)  [target: Retrain]")
        axis.set_title(SCENARIO_TITLES[scenario])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="best")
    figure.suptitle(f"Forgetting vs utility — {table.title}")
    path = _save_png(figure, folder / f"{table.task}-{_slug(table.corpus)}-forgetting-vs-utility.png")
    plt.close(figure)
    return [path]


def plot_metrics_vs_ratio(rows: Sequence[EvalRow], table: Table, folder: Path) -> list[Path]:
    """Sample unlearning: each metric against the forget ratio, one line per method."""
    sample = [r for r in rows if r.scenario == "sample" and r.ratio is not None]
    if not sample:
        return []
    plt = _pyplot()
    keys = ("df", "dr", "test", "loss_mia", "svc_mia", "avg_gap")
    figure, axes = plt.subplots(2, 3, figsize=(14, 8), squeeze=False, constrained_layout=True)
    ratios = sorted({r.ratio for r in sample})
    for axis, key in zip(axes.flat, keys):
        for method in _method_order(r.method for r in sample):
            points = [(ratio * 100, _mean([r for r in sample if r.method == method and r.ratio == ratio], key)[0])
                      for ratio in ratios]
            points = [(x, y) for x, y in points if y is not None]
            if not points:
                continue
            style = {"retrain": dict(color="black", linewidth=2.5, marker="*"),
                     "original": dict(color="grey", linestyle="--", marker="s")}.get(method, dict(marker="o"))
            axis.plot(*zip(*points), label=display_name(method), **style)
        axis.set_title(COLUMN_BY_KEY[key].title, fontsize=9)
        axis.set_xlabel("forget ratio (%)")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"Metrics vs forget ratio (sample unlearning) — {table.title}")
    path = _save_png(figure, folder / f"{table.task}-{_slug(table.corpus)}-metrics-vs-ratio.png")
    plt.close(figure)
    return [path]


def plot_time_vs_gap(rows: Sequence[EvalRow], table: Table, folder: Path) -> list[Path]:
    """Unlearning time against Avg. Gap to Retrain, one point per (method, scenario)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4.6), constrained_layout=True)
    markers = {"sample": "o", "class": "^", "speaker": "D"}
    for scenario in [s for s in SCENARIO_TITLES if any(r.scenario == s for r in rows)]:
        chosen = [r for r in rows if r.scenario == scenario and r.method != "original"]
        for method in _method_order(r.method for r in chosen):
            mine = [r for r in chosen if r.method == method]
            (x, _), (y, _) = _mean(mine, "seconds"), _mean(mine, "avg_gap")
            if x is None or y is None:
                continue
            if method == "retrain":
                axis.scatter([x], [y], marker="*", s=260, color="black", zorder=5)
                axis.annotate(f"Retrain ({scenario})", (x, y), fontsize=7)
            else:
                axis.scatter([x], [y], marker=markers[scenario], s=45)
                axis.annotate(method, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axis.set_xscale("log")
    axis.set_xlabel("time (s, log scale)  [Retrain: training time]")
    axis.set_ylabel("Avg. Gap to Retrain (pp)  [lower = closer to Retrain]")
    axis.set_title(f"Time vs Avg. Gap — {table.title}\n(o sample, ^ class, D speaker)", fontsize=10)
    axis.grid(alpha=0.3)
    path = _save_png(figure, folder / f"{table.task}-{_slug(table.corpus)}-time-vs-gap.png")
    plt.close(figure)
    return [path]


def _slug(text: str) -> str:
    """A file-name-safe short form of a corpus spec ("fsdd:/data/fsdd" -> "fsdd")."""
    head = text.split(":")[0]
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in head) or "corpus"


# ---------------------------------------------------------------------------------------------
# Ensemble rows: a split's models against its K Retrains (experiments/ensembles.py)

ENSEMBLE_COLUMNS: tuple[Column, ...] = (
    Column("forgetting_quality", "Forgetting quality F [higher = like Retrain]",
           ("scores", "forgetting_quality", "forgetting_quality"), 1.0, 3),
    Column("final_score", "Final score [F x utility ratios]", ("scores", "forgetting_quality", "final_score"), 1.0, 3),
    Column("ulira_auc", "U-LiRA AUC (%) [50 = like Retrain]", ("scores", "ulira", "auc"), 100.0),
    Column("ulira_tpr_1", "U-LiRA TPR @ 1 % FPR (%) [~1 = like Retrain]", ("scores", "ulira", "tpr_at_1pct_fpr"), 100.0),
    Column("ulira_tpr_01", "U-LiRA TPR @ 0.1 % FPR (%) [~0.1 = like Retrain]",
           ("scores", "ulira", "tpr_at_0_1pct_fpr"), 100.0, 2),
    Column("informed", "Informed attack bal. acc. (%) [50 = like Retrain]",
           ("scores", "informed_attack", "balanced_accuracy"), 100.0),
)
# Metrics of the Retrain-spread table, in this order when present (the headline count covers all).
SPREAD_KEYS = ("accuracy.df", "accuracy.dr", "accuracy.test", "accuracy.test_remaining", "loss_mia.accuracy",
               "svc_mia.confidence", "probe.balanced_accuracy", "relearn.early", "relearn.after")
ENSEMBLE_NOTES = (
    "Ensemble tables (retrain_seeds = K >= 2): every split has K Retrains trained on its Dr with seeds other than "
    "the Original's, every method K unlearned models with their own seeds (unlearn_seeds); column K gives "
    "unlearned / Retrain models. The Retrain row of the paper table then pools the K Retrains: its ± is the "
    "Retrain spread, its Avg. Gap each Retrain's gap to the split's first Retrain (0 for that one).",
    "Forgetting quality F (NeurIPS 2023 unlearning challenge): per forget example, the (eps, delta = 1e-5) that "
    "the best threshold rule on the logit-scaled confidence reaches between the K unlearned and the K Retrain "
    "models, bucketed; F in [0, 1], higher = more like Retrain. Two Retrain pools already score well below 1 "
    "at finite K (about 0.2 at K = 8), so read F against the Retrain-vs-Retrain row. Final score = F x (Dr "
    "accuracy / Retrain's) x (Dtest accuracy / Retrain's; the remaining classes' for class unlearning). Needs "
    "K >= 3 on both sides (NA otherwise).",
    "U-LiRA (Hayes et al. 2024), leave-one-seed-out: per-example Gaussians of that confidence under the other "
    "unlearned models and the other Retrains, a likelihood ratio per (model, example). AUC 50 % = the unlearned "
    "models cannot be told from Retrains, 100 % = always; TPR at 1 % / 0.1 % FPR is about the FPR itself for an "
    "attack with no power, higher = unlearned models caught at that false-alarm rate.",
    "Informed attack: a classifier on per-example loss, confidence, entropy and margin, trained on the other "
    "seeds' unlearned vs Retrain models and tested on the held-out seed; balanced accuracy 50 % = "
    "indistinguishable from Retrain, 100 % = every held-out model told apart.",
    "Indistinguishable from Retrain on N of M metrics: for every metric (the headline keys of the accuracies "
    "and of each attack; time left out), a two-sided test at the 95 % level against the split's Retrains: "
    "Welch's t-test for a row of >= 2 models, else the 95 % prediction interval of one more Retrain. 'in' "
    "means no difference was found, not that there is none: with few models the test has little power, and "
    "about 1 metric in 20 lands outside by chance. Counts are summed over splits.",
    "Retrain-vs-Retrain row: the first half of the Retrains against the second half (K/2 models each, K >= 4; "
    "the scores need K >= 6): the noise floor of every score. Original row: 'nothing measurable to forget' "
    "when the Original itself is inside the Retrain spread on every metric, so no method can show forgetting "
    "on that split. 'no-op': every unlearned model is byte-identical to the Original; it passes whatever the "
    "Original passes and is not a win.",
)


@dataclass(frozen=True)
class EnsembleEntry:
    """One finished ensemble run: its grid coordinates and its row (evaluation.retrain_ensemble)."""

    task: str
    corpus: str
    model: str
    seed: int
    scenario: str
    split: str
    method: str
    retrain_match: str
    row: Mapping[str, Any]


@dataclass
class EnsembleRow:
    """One method's ensemble entries of a scenario, pooled over splits."""

    scenario: str
    method: str
    entries: list[EnsembleEntry]
    cells: dict[str, Cell] = field(default_factory=dict)

    @property
    def sizes(self) -> str:
        """"8/8" (unlearned / Retrain models), several when splits differ."""
        return ", ".join(sorted({f"{e.row['n_unlearned']}/{e.row['n_retrains']}" for e in self.entries}))

    @property
    def headline(self) -> str:
        inside = sum(e.row["spread"]["n_inside"] for e in self.entries)
        tested = sum(e.row["spread"]["n_tested"] for e in self.entries)
        splits = f" ({len(self.entries)} splits)" if len(self.entries) > 1 else ""
        return f"{inside} of {tested}{splits}"

    @property
    def verdict(self) -> str:
        """no-op / nothing measurable to forget (in every split, or in how many) / the headline."""
        count = len(self.entries)
        if all(e.row.get("no_op") for e in self.entries):
            return "no-op"
        nothing = sum(bool(e.row.get("nothing_to_forget")) for e in self.entries)
        if nothing:
            return "nothing measurable to forget" + ("" if nothing == count else f" in {nothing} of {count} splits")
        return f"indistinguishable from Retrain on {self.headline} metrics"


@dataclass
class EnsembleTable:
    task: str
    corpus: str
    retrain_match: str
    rows: list[EnsembleRow] = field(default_factory=list)

    @property
    def title(self) -> str:
        against = "" if self.retrain_match == "epochs" else ", against step-matched Retrains"
        return f"{TASK_TITLES.get(self.task, self.task)} ({self.task}) on {self.corpus}{against}"


def collect_ensembles(store: ResultStore) -> list[EnsembleEntry]:
    """Every finished ensemble run of the database, its method named with its overrides."""
    context = EvaluationContext.of(store)
    entries = []
    for record in store.records(stage="ensemble", status="done"):
        config = record.config
        first = (config.get("subjects") or [None])[0]
        entries.append(EnsembleEntry(
            task=config["task"], corpus=config["corpus"], model=config["model"], seed=int(config["seed"]),
            scenario=config["split"]["scenario"], split=describe_split(config["split"]),
            method=variant_label(config["method"], context.overrides.get(first, {})),
            retrain_match=context.retrain_kind_of(record), row=record.metrics or {},
        ))
    return entries


def aggregate_ensembles(entries: Sequence[EnsembleEntry]) -> list[EnsembleTable]:
    """One table per (task, corpus, kind of Retrain); rows Original, Retrain-vs-Retrain, then methods."""
    grouped: dict[tuple[str, str, str], list[EnsembleEntry]] = defaultdict(list)
    for entry in entries:
        grouped[(entry.task, entry.corpus, entry.retrain_match)].append(entry)
    tables = []
    for (task, corpus, match), members in sorted(grouped.items()):
        table = EnsembleTable(task, corpus, match)
        for scenario in [s for s in SCENARIO_TITLES if any(e.scenario == s for e in members)]:
            in_scenario = [e for e in members if e.scenario == scenario]
            for method in _method_order(e.method for e in in_scenario):
                chosen = [e for e in in_scenario if e.method == method]
                cells = {c.key: Cell.of(None if (v := _lookup(e.row, c.path)) is None else v * c.scale for e in chosen)
                         for c in ENSEMBLE_COLUMNS}
                table.rows.append(EnsembleRow(scenario, method, chosen, cells))
        tables.append(table)
    return tables


def _ensemble_name(method: str) -> str:
    return "Retrain vs Retrain (halves)" if method == "retrain" else display_name(method)


def _ensemble_lines(table: EnsembleTable) -> list[str]:
    header = ["Row", "K", *(c.title for c in ENSEMBLE_COLUMNS), "Indistinguishable (N of M)", "Verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    current = None
    for row in table.rows:
        if row.scenario != current:
            current = row.scenario
            lines.append(f"| **{SCENARIO_TITLES[current]}** |" + " |" * (len(header) - 1))
        cells = [row.cells[c.key].format(c.digits) for c in ENSEMBLE_COLUMNS]
        lines.append("| " + " | ".join([_ensemble_name(row.method), row.sizes, *cells, row.headline, row.verdict]) + " |")
    return lines


def _spread_keys(table: EnsembleTable) -> list[str]:
    present = {key for row in table.rows for e in row.entries for key in e.row["spread"]["comparisons"]}
    return [key for key in SPREAD_KEYS if key in present]


def _retrain_spread(rows: Sequence[EnsembleRow], key: str) -> str:
    """The split's Retrains on `key`: mean ± std (ddof = 1), averaged over splits."""
    per_split = {}
    for row in rows:
        if row.method == "retrain":  # its comparisons are half against half
            continue
        for entry in row.entries:
            comparison = entry.row["spread"]["comparisons"].get(key)
            if comparison is not None:
                per_split[(entry.model, entry.seed, entry.split)] = comparison
    if not per_split:
        return "NA"
    mean = statistics.fmean(c["retrain_mean"] for c in per_split.values()) * 100
    stds = [c["retrain_std"] for c in per_split.values() if c["retrain_std"] is not None]
    return f"{mean:.1f}" + (f" ± {statistics.fmean(stds) * 100:.1f}" if stds else "")


def _spread_cell(row: EnsembleRow, key: str) -> str:
    """The row's mean on `key` and whether it lies inside the Retrain spread ("in", "out", "in 2/3")."""
    comparisons = [e.row["spread"]["comparisons"][key] for e in row.entries if key in e.row["spread"]["comparisons"]]
    if not comparisons:
        return "NA"
    mean = statistics.fmean(c["method_mean"] for c in comparisons) * 100
    tested = [c["inside"] for c in comparisons if c["inside"] is not None]
    if not tested:
        return f"{mean:.1f}"
    inside = sum(tested)
    if len(tested) == 1:
        return f"{mean:.1f} ({'in' if inside else 'out'})"
    return f"{mean:.1f} (in {inside}/{len(tested)})"


def _spread_lines(table: EnsembleTable) -> list[str]:
    keys = _spread_keys(table)
    header = ["Row", *(f"{key} (%)" for key in keys)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for scenario in dict.fromkeys(row.scenario for row in table.rows):
        rows = [row for row in table.rows if row.scenario == scenario]
        lines.append(f"| **{SCENARIO_TITLES[scenario]}** |" + " |" * (len(header) - 1))
        lines.append("| " + " | ".join(["Retrains (mean ± std)", *(_retrain_spread(rows, k) for k in keys)]) + " |")
        for row in rows:
            lines.append("| " + " | ".join([_ensemble_name(row.method), *(_spread_cell(row, k) for k in keys)]) + " |")
    return lines


def ensemble_markdown(tables: Sequence[EnsembleTable]) -> list[str]:
    """Both ensemble tables of every (task, corpus), as Markdown lines (empty without ensembles)."""
    lines = []
    for table in tables:
        lines += [f"## Against the Retrain ensemble: {table.title}", "", *_ensemble_lines(table), "",
                  "Retrain spread: each row's mean and whether it lies inside the Retrains' distribution "
                  "(95 % level).", "", *_spread_lines(table), ""]
    return lines


def ensembles_csv(entries: Sequence[EnsembleEntry]) -> str:
    """Every ensemble row, one line each: coordinates, scores, the headline count and the verdict."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["task", "corpus", "model", "seed", "scenario", "split", "method", "n_unlearned", "n_retrains",
                     *[c.key for c in ENSEMBLE_COLUMNS], "n_inside", "n_tested", "no_op", "nothing_to_forget",
                     "verdict"])
    for entry in entries:
        row = entry.row
        values = [_lookup(row, c.path) for c in ENSEMBLE_COLUMNS]
        writer.writerow([entry.task, entry.corpus, entry.model, entry.seed, entry.scenario, entry.split, entry.method,
                         row["n_unlearned"], row["n_retrains"],
                         *["" if v is None else f"{v * c.scale:.6g}" for v, c in zip(values, ENSEMBLE_COLUMNS)],
                         row["spread"]["n_inside"], row["spread"]["n_tested"], bool(row.get("no_op")),
                         bool(row.get("nothing_to_forget")), row["verdict"]])
    return out.getvalue()


def _markdown_to_html(lines: Sequence[str]) -> str:
    """The ensemble section's Markdown (headings, paragraphs, pipe tables) as HTML."""
    parts, table = [], []

    def flush() -> None:
        if table:
            cells = [[c.strip() for c in line.strip("|").split("|")] for line in table if not line.startswith("|---")]
            head = "".join(f"<th>{html.escape(c)}</th>" for c in cells[0])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip('*'))}</td>" for c in row) + "</tr>"
                           for row in cells[1:])
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            table.clear()

    for line in lines:
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("## "):
            parts.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line:
            parts.append(f'<p class="caption">{html.escape(line)}</p>')
    flush()
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1250px;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.3em .55em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
tr.group td{background:#fafafa;font-weight:bold;text-align:left}
tr.reference td{color:#555;font-style:italic}
.caption{color:#555;font-size:.9em}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
li{margin:.2em 0}code{background:#f4f4f4;padding:0 .2em}
"""


def _html_table(table: Table) -> str:
    titles = ["Method", *(c.title for c in TABLE_COLUMNS), STEPS_TITLE, "runs"]
    head = "".join(f"<th>{html.escape(t)}</th>" for t in titles)
    body, current = [], None
    for row in table.rows:
        if row.scenario != current:
            current = row.scenario
            body.append(f'<tr class="group"><td colspan="{len(titles)}">{SCENARIO_TITLES[current]}</td></tr>')
        cells = "".join(f"<td>{html.escape(row.cells[c.key].format(c.digits))}</td>" for c in TABLE_COLUMNS)
        cells += f"<td>{html.escape(row.schedule or '—')}</td>"
        css = ' class="reference"' if row.method in REFERENCE_ROWS else ""
        body.append(f"<tr{css}><td>{html.escape(display_name(row.method, row.no_op))}</td>{cells}<td>{row.runs}</td></tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def format_html(tables: Sequence[Table], plots: Sequence[Path], failures: Sequence[RunRecord] = (),
                ensembles: Sequence[EnsembleTable] = ()) -> str:
    """A single self-contained page: inline CSS, every plot embedded as a base64 PNG."""
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<title>Speech unlearning benchmark</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>Speech unlearning benchmark</h1>"]
    if not tables:
        parts.append("<p>No finished evaluation in this run folder yet.</p>")
    for table in tables:
        parts += [f"<h2>{html.escape(table.title)}</h2>", f'<p class="caption">{html.escape(_table_caption(table))}</p>',
                  _html_table(table)]
    if ensembles:
        parts.append(_markdown_to_html(ensemble_markdown(ensembles)))
    notes = reading_notes(tables, ensembles)
    parts += ["<h2>How to read the tables</h2><ul>"] + [f"<li>{html.escape(n)}</li>" for n in notes] + ["</ul>"]
    if plots:
        parts.append("<h2>Plots</h2>")
        for plot in plots:
            data = base64.b64encode(plot.read_bytes()).decode("ascii")
            parts.append(f'<p><img alt="{html.escape(plot.stem)}" src="data:image/png;base64,{data}"></p>')
    if failures:
        parts.append(f"<h2>Failed runs ({len(failures)})</h2><ul>")
        for record in failures:
            first = (record.error or "").splitlines()[0] if record.error else ""
            parts.append(f"<li><code>{record.key[:12]}</code> {html.escape(record.label)}: {html.escape(first)}</li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Entry point


def write_report_files(run_dir: str | Path, plots: bool = True) -> dict[str, Path]:
    """Write RUN_DIR/report/{report.md, results.csv, runs.csv, report.html, plots/*.png}.

    Reads only the results database; raises FileNotFoundError if RUN_DIR has none.
    Returns {"markdown", "csv", "runs_csv", "html"} paths, and "ensembles_csv" when the folder
    has ensemble rows.
    """
    run_dir = Path(run_dir)
    with ResultStore.existing(run_dir) as store:
        rows = collect_rows(store)
        failures = store.records(status="failed")
        tables = aggregate(rows)
        attach_original_fits(tables, store)
        entries = collect_ensembles(store)
    ensembles = aggregate_ensembles(entries)
    folder = run_dir / REPORT_FOLDER
    for owned in (folder, folder / PLOTS_FOLDER):  # leftovers of a report write that was killed
        clean_stale_temporaries(owned)
    images: list[Path] = []
    if plots:
        for table in tables:
            mine = [r for r in rows if (r.task, r.corpus) == (table.task, table.corpus)]
            for plot in (plot_forgetting_vs_utility, plot_metrics_vs_ratio, plot_time_vs_gap):
                images += plot(mine, table, folder / PLOTS_FOLDER)
    paths = {"markdown": folder / "report.md", "csv": folder / "results.csv", "runs_csv": folder / "runs.csv",
             "html": folder / "report.html"}
    if entries:
        paths["ensembles_csv"] = folder / "ensembles.csv"
        atomic_write_text(paths["ensembles_csv"], ensembles_csv(entries))
    atomic_write_text(paths["markdown"], format_markdown(tables, failures, images, ensembles, ranking_markdown(rows)))
    atomic_write_text(paths["csv"], results_csv(tables))
    atomic_write_text(paths["runs_csv"], runs_csv(rows))
    atomic_write_text(paths["html"], format_html(tables, images, failures, ensembles))
    return paths


def format_terminal(run_dir: str | Path) -> str:
    """The Markdown tables only, for printing at the end of a bench; with ensemble rows, their two
    tables and the notes that give their sign conventions."""
    with ResultStore(Path(run_dir) / "runs.sqlite") as store:
        tables = aggregate(collect_rows(store))
        attach_original_fits(tables, store)
        ensembles = aggregate_ensembles(collect_ensembles(store))
    lines = []
    for table in tables:
        lines += [table.title, *_markdown_table(table), *([table.original_fit] if table.original_fit else []), ""]
    objective = objective_note(tables)
    if objective:
        lines += [f"- {objective}", ""]
    if ensembles:
        lines += ensemble_markdown(ensembles) + [f"- {note}" for note in ENSEMBLE_NOTES] + [""]
    return "\n".join(lines)
