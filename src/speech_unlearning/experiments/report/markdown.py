"""The Markdown report: the paper tables with their captions, the ensemble and ranking sections,
the reading notes under them (which attacks each method's own objective touches among them),
plots and failed runs."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..store import RunRecord
from .ensemble_tables import ENSEMBLE_NOTES, EnsembleTable, ensemble_markdown
from .layout import RELEARN, REFERENCE_ROWS, STEPS_TITLE, TABLE_COLUMNS, display_name, scenario_grouped_table
from .rows import Table

# How long the Retrain trained, by BenchConfig.retrain_match.
RETRAIN_LENGTHS = {"epochs": "the Original's epochs on Dr",
                   "steps": "the Original's number of optimiser steps on Dr (retrain_match=steps)"}


def markdown_table(table: Table) -> list[str]:
    """The paper table as Markdown lines, a bold line opening each scenario."""
    header = ["Method", *(c.title for c in TABLE_COLUMNS), STEPS_TITLE, "runs"]

    def cells_of(row) -> list[str]:
        cells = [row.cells[c.key].format(c.digits) for c in TABLE_COLUMNS]
        return [display_name(row.method, row.no_op), *cells, row.schedule or "—", str(row.runs)]

    return scenario_grouped_table(header, table.rows, cells_of)


def table_caption(table: Table) -> str:
    """What the table pools: backbones, seeds, forget ratios and how its Retrain trained."""
    ratios = ", ".join(f"{r * 100:g} %" for r in table.ratios) or "none"
    retrain = " and ".join(RETRAIN_LENGTHS[match] for match in table.retrain_matches)
    return (f"Backbones: {', '.join(table.models)}; seeds: {', '.join(map(str, table.seeds))}; "
            f"sample forget ratios: {ratios}; Retrain: {retrain}. Mean ± std (ddof = 1) over every run in the row.")


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
    from ...evaluation.metrics import metrics_reading
    from ...methods.base import split_method_name
    from ..plan import load_methods

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


def reading_notes(tables: Sequence[Table], ensembles: Sequence[EnsembleTable] = ()) -> tuple[str, ...]:
    """The notes under the tables: how to read them, which attacks each method optimises, and the
    ensemble tables' sign conventions when there are any."""
    objective = objective_note(tables)
    return READING_NOTES + ((objective,) if objective else ()) + (ENSEMBLE_NOTES if ensembles else ())


def format_markdown(tables: Sequence[Table], failures: Sequence[RunRecord] = (), plots: Sequence[Path] = (),
                    ensembles: Sequence[EnsembleTable] = (), ranking: Sequence[str] = (),
                    tuning: Sequence[str] = ()) -> str:
    """The report: the paper-style tables, the ensemble tables, the `ranking` and `tuning`
    sections' lines (ranking_report.ranking_markdown, tuning_table.tuning_markdown), the reading
    notes, plots and failures."""
    lines = ["# Speech unlearning benchmark", ""]
    if not tables:
        lines += ["No finished evaluation in this run folder yet.", ""]
    for table in tables:
        lines += [f"## {table.title}", "", table_caption(table), "", *markdown_table(table), ""]
        if table.original_fit:
            lines += [table.original_fit, ""]
    lines += ensemble_markdown(ensembles)
    lines += list(ranking)
    lines += list(tuning)
    notes = reading_notes(tables, ensembles)
    lines += ["## How to read the tables", ""] + [f"- {note}" for note in notes] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    if failures:
        lines += [f"## Failed runs ({len(failures)})", ""]
        lines += [f"- `{r.key[:12]}` {r.label}: {(r.error or '').splitlines()[0] if r.error else ''}" for r in failures]
        lines.append("")
    return "\n".join(lines)
