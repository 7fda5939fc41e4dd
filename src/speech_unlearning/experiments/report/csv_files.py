"""The report's CSV files: results.csv (the aggregated tables), runs.csv (one line per evaluation)
and ensembles.csv (one line per ensemble row)."""

from __future__ import annotations

import csv
import io
from typing import Sequence

from .ensemble_tables import ENSEMBLE_COLUMNS, EnsembleEntry
from .layout import COLUMNS, REFERENCE_ROWS, TABLE_COLUMNS, value_at
from .markdown import objective_touches
from .rows import EvalRow, Table


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


def ensembles_csv(entries: Sequence[EnsembleEntry]) -> str:
    """Every ensemble row, one line each: coordinates, scores, the headline count and the verdict."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["task", "corpus", "model", "seed", "scenario", "split", "method", "n_unlearned", "n_retrains",
                     *[c.key for c in ENSEMBLE_COLUMNS], "n_inside", "n_tested", "no_op", "nothing_to_forget",
                     "verdict"])
    for entry in entries:
        row = entry.row
        values = [value_at(row, c.path) for c in ENSEMBLE_COLUMNS]
        writer.writerow([entry.task, entry.corpus, entry.model, entry.seed, entry.scenario, entry.split, entry.method,
                         row["n_unlearned"], row["n_retrains"],
                         *["" if v is None else f"{v * c.scale:.6g}" for v, c in zip(values, ENSEMBLE_COLUMNS)],
                         row["spread"]["n_inside"], row["spread"]["n_tested"], bool(row.get("no_op")),
                         bool(row.get("nothing_to_forget")), row["verdict"]])
    return out.getvalue()
