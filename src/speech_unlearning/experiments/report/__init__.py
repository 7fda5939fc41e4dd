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
names, per method, the attacks its own objective touches (`objective_touches`). A grid run with
`--tune` gets a tuning section: each method's chosen lr and epochs, its validation gap against the
method's defaults, and how many grid points were no-ops.

Files written to RUN_DIR/report/: report.md, results.csv (the aggregated tables), runs.csv (one
line per evaluation), ensembles.csv (one line per ensemble row, when there are any), report.html
(inline CSS, plots embedded as base64 PNG) and plots/*.png.

One job per module:

- `layout`           the columns, titles and row order every table shares;
- `rows`             evaluations as EvalRow, pooled into Tables of Cells (mean ± std);
- `ensemble_tables`  the ensemble and Retrain-spread tables, and their notes;
- `markdown`         report.md: tables, captions, reading notes (with `objective_touches`);
- `csv_files`        results.csv, runs.csv, ensembles.csv;
- `html_page`        report.html;
- `plots`            the PNG plots (matplotlib);
- `tuning_table`     the tuning section of report.md;
- `files`            `write_report_files` and `format_terminal`, the entry points.

The names below are the package's public API; import them from here.
"""

from .csv_files import ensembles_csv, results_csv, runs_csv
from .ensemble_tables import ENSEMBLE_NOTES, aggregate_ensembles, collect_ensembles, ensemble_markdown
from .files import PLOTS_FOLDER, REPORT_FOLDER, format_terminal, write_report_files
from .html_page import format_html
from .layout import COLUMNS, RELEARN, SCENARIO_TITLES, TABLE_COLUMNS, TASK_TITLES, Column
from .markdown import format_markdown, objective_touches, reading_notes
from .rows import Cell, EvalRow, RunLookup, Table, aggregate, collect_rows, eval_row, variant_label

__all__ = [
    "COLUMNS", "ENSEMBLE_NOTES", "PLOTS_FOLDER", "RELEARN", "REPORT_FOLDER", "SCENARIO_TITLES", "TABLE_COLUMNS",
    "TASK_TITLES", "Cell", "Column", "EvalRow", "RunLookup", "Table", "aggregate", "aggregate_ensembles",
    "collect_ensembles", "collect_rows", "ensemble_markdown", "ensembles_csv", "eval_row", "format_html",
    "format_markdown", "format_terminal", "objective_touches", "reading_notes", "results_csv", "runs_csv",
    "variant_label", "write_report_files",
]
