"""What every report table shares: its columns (where each value sits in an evaluation's metrics
JSON, and its scale), the titles of tasks, scenarios and rows, and the order of the rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from ...evaluation.relearn import RelearnConfig

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


# The text column after the numeric ones: how much of its schedule each unlearning run took.
STEPS_TITLE = "Steps (of planned)"


def value_at(metrics: Mapping[str, Any], path: Sequence[str]) -> float | None:
    """The number at `path` in a metrics JSON; None where the path is missing or null."""
    value: Any = metrics
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return None if value is None else float(value)


def method_order(methods: Iterable[str]) -> list[str]:
    """Original, Retrain, then methods alphabetically with each "+superloss" variant after its base."""
    present = set(methods)
    rest = sorted(present - set(REFERENCE_ROWS), key=lambda name: (name.split("+")[0], name))
    return [name for name in REFERENCE_ROWS if name in present] + rest


def display_name(method: str, no_op: bool = False) -> str:
    """A row's name in the tables: the references capitalised, "(no-op)" after a row that changed nothing."""
    name = {"original": "Original", "retrain": "Retrain"}.get(method, method)
    return f"{name} (no-op)" if no_op else name


def scenario_grouped_table(header: Sequence[str], rows: Sequence[Any], cells_of) -> list[str]:
    """Markdown lines of a table whose `rows` (each with a `.scenario`) come grouped by scenario,
    a bold line opening each group; `cells_of(row)` gives the row's cells in `header` order."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    current = None
    for row in rows:
        if row.scenario != current:
            current = row.scenario
            lines.append(f"| **{SCENARIO_TITLES[current]}** |" + " |" * (len(header) - 1))
        lines.append("| " + " | ".join(cells_of(row)) + " |")
    return lines
