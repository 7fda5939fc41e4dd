"""The entry points: write every report file of a run folder from its results database, and the
tables as plain text for the end of a bench."""

from __future__ import annotations

from pathlib import Path

from ...io import atomic_write_text, clean_stale_temporaries
from ..ranking_report import ranking_markdown
from ..store import ResultStore
from .csv_files import ensembles_csv, results_csv, runs_csv
from .ensemble_tables import ENSEMBLE_NOTES, aggregate_ensembles, collect_ensembles, ensemble_markdown
from .html_page import format_html
from .markdown import format_markdown, markdown_table, objective_note
from .plots import plot_forgetting_vs_utility, plot_metrics_vs_ratio, plot_time_vs_gap
from .rows import aggregate, attach_original_fits, collect_rows
from .tuning_table import tuning_markdown

REPORT_FOLDER = "report"
PLOTS_FOLDER = "plots"  # inside REPORT_FOLDER


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
        tuning = tuning_markdown(store.tuning_rows())
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
    ranking = ranking_markdown(rows)
    atomic_write_text(paths["markdown"], format_markdown(tables, failures, images, ensembles, ranking, tuning))
    atomic_write_text(paths["csv"], results_csv(tables))
    atomic_write_text(paths["runs_csv"], runs_csv(rows))
    atomic_write_text(paths["html"], format_html(tables, images, failures, ensembles, [*ranking, *tuning]))
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
        lines += [table.title, *markdown_table(table), *([table.original_fit] if table.original_fit else []), ""]
    objective = objective_note(tables)
    if objective:
        lines += [f"- {objective}", ""]
    if ensembles:
        lines += ensemble_markdown(ensembles) + [f"- {note}" for note in ENSEMBLE_NOTES] + [""]
    return "\n".join(lines)
