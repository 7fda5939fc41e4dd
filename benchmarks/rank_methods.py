"""Rank the methods of finished benchmark grids, per setting, with paired tests. Prints Markdown.

    .venv/bin/python benchmarks/rank_methods.py RUN_DIR [RUN_DIR ...] [--score avg_gap] [--alpha 0.05]

A setting is (task, corpus, scenario). The score of a method in a cell (one forget split of one
backbone and seed) is its Avg. Gap to that cell's Retrain, averaged over the cell's runs; lower
is better. Methods are ranked by their mean over cells; Retrain itself (0 by definition) is left
out, and the Original is ranked as "do nothing", the line a method has to beat.

Two columns answer "is the difference real?" (see speech_unlearning/evaluation/ranking.py):
"ahead of the next" tests each method against the one ranked just below it, "beats doing
nothing" tests it against the Original; both are two-sided paired t-tests over the shared cells
at level --alpha, Holm-corrected within each column of a setting. With 5 cells only large and
consistent differences are significant: "no" means "not shown", not "equal".
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from speech_unlearning.evaluation.ranking import DO_NOTHING, Ranking, rank_methods, verdict
from speech_unlearning.experiments.report import COLUMN_BY_KEY, SCENARIO_TITLES, TASK_TITLES, collect_rows
from speech_unlearning.experiments.store import ResultStore


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", type=Path, nargs="+", help="finished `speech-unlearn bench` run folders")
    parser.add_argument("--score", default="avg_gap", help="the report column to rank by (lower is better)")
    parser.add_argument("--alpha", type=float, default=0.05, help="level of each family of tests")
    parser.add_argument("--compact", action="store_true",
                        help="one line per setting: the order with '<' (significant) or '~' (not) between "
                             "neighbours, and the methods that beat doing nothing")
    return parser.parse_args()


def cell_scores(run_dirs: list[Path], score: str) -> dict[tuple, dict[str, dict[tuple, float]]]:
    """setting -> method -> cell -> mean score of the cell's runs (ratios of one seed are cells
    of their own: each has its own split and Retrain)."""
    pooled: dict[tuple, dict[str, dict[tuple, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for run_dir in run_dirs:
        try:
            store = ResultStore.existing(run_dir)
        except FileNotFoundError as error:
            raise SystemExit(str(error)) from None
        with store:
            for row in collect_rows(store):
                value = row.values.get(score)
                if row.method == "retrain" or value is None:
                    continue
                setting = (row.task, row.corpus, row.scenario)
                pooled[setting][row.method][row.cell].append(value)
    return {setting: {method: {cell: statistics.fmean(v) for cell, v in cells.items()}
                      for method, cells in methods.items()}
            for setting, methods in pooled.items()}


def nothing_cell(ranking: Ranking, method: str) -> str:
    if method == DO_NOTHING:
        return "(the Original)"
    test = ranking.against_nothing.get(method)
    if test is None:
        return ""
    if test.better == DO_NOTHING:
        return "no: worse, " + verdict(test).replace("yes", "significant").replace("no (", "not significant (")
    return verdict(test)


def markdown(setting: tuple, ranking: Ranking, score: str) -> list[str]:
    task, corpus, scenario = setting
    title = COLUMN_BY_KEY[score].title if score in COLUMN_BY_KEY else score
    lines = [f"#### {TASK_TITLES.get(task, task)} on {corpus}: {SCENARIO_TITLES.get(scenario, scenario)}", "",
             f"| Rank | Method | {title} (mean ± std over cells) | Cells | Ahead of the next | Beats doing nothing |",
             "|---|---|---|---|---|---|"]
    for rank, row in enumerate(ranking.methods):
        spread = "" if row.std is None else f" ± {row.std:.2f}"
        ahead = verdict(ranking.adjacent[rank]) if rank < len(ranking.adjacent) else ""
        name = "Original (do nothing)" if row.method == DO_NOTHING else row.method
        lines.append(f"| {rank + 1} | {name} | {row.mean:.2f}{spread} | {row.cells} | {ahead} | {nothing_cell(ranking, row.method)} |")
    return lines + [""]


def compact_line(setting: tuple, ranking: Ranking) -> str:
    task, corpus, scenario = setting
    order = ranking.methods[0].method
    for test, row in zip(ranking.adjacent, ranking.methods[1:]):
        order += (" < " if test.significant else " ~ ") + row.method
    winners = [name for name, test in ranking.against_nothing.items()
               if test.significant and test.better != DO_NOTHING]
    cells = min(row.cells for row in ranking.methods)
    return (f"| {task} {scenario} ({corpus.split(':')[0]}, {cells} cells) | {order.replace(DO_NOTHING, '**Original**')} "
            f"| {', '.join(winners) or 'none'} |")


def main() -> None:
    args = parse_args()
    settings = cell_scores(args.run_dirs, args.score)
    if not settings:
        raise SystemExit("no finished evaluations with that score in these folders")
    print(f"Paired two-sided t-tests over shared cells at alpha = {args.alpha}; each verdict is Holm-corrected "
          "within its column of a setting, the p-value shown is the uncorrected one.\n")
    if args.compact:
        print("| Setting | Lowest first ('<' significant, '~' not) | Significantly closer to Retrain than doing nothing |")
        print("|---|---|---|")
    for setting in sorted(settings):
        ranking = rank_methods(settings[setting], args.alpha)
        print(compact_line(setting, ranking) if args.compact else "\n".join(markdown(setting, ranking, args.score)))


if __name__ == "__main__":
    main()
