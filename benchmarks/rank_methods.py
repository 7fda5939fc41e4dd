"""Rank the methods of finished benchmark grids, per setting, with paired tests. Prints Markdown.

    .venv/bin/python benchmarks/rank_methods.py RUN_DIR [RUN_DIR ...] [--compact] [--alpha 0.05]

A setting is (task, corpus, scenario). The score of a method in a cell (one forget split of one
backbone and seed) is its Avg. Gap to that cell's Retrain, averaged over the cell's runs; lower
is better. Methods are ranked by their mean over cells; Retrain itself (0 by definition) is left
out, and the Original is ranked as "do nothing", the line a method has to beat. Several run
folders are pooled (their cells must differ in seed or split, as grids of extra seeds do).

Two columns answer "is the difference real?" (speech_unlearning/evaluation/ranking.py): "ahead of
the next" tests each method against the one ranked just below it, "beats doing nothing" tests it
against the Original; both are two-sided paired t-tests over the shared cells at level --alpha,
Holm-corrected within each column of a setting. With 5 cells only large and consistent
differences are significant: "no" means "not shown", not "equal". `speech-unlearn report` prints
the compact form in its "Ranking" section.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from speech_unlearning.experiments.ranking_report import compact_table, detailed_table, ranked_settings
from speech_unlearning.experiments.report import SCENARIO_TITLES, TASK_TITLES, collect_rows
from speech_unlearning.experiments.store import ResultStore


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", type=Path, nargs="+", help="finished `speech-unlearn bench` run folders")
    parser.add_argument("--alpha", type=float, default=0.05, help="level of each family of tests")
    parser.add_argument("--compact", action="store_true",
                        help="one line per setting: the order with '<' (significant) or '~' (not) between "
                             "neighbours, and the methods that beat doing nothing")
    return parser.parse_args()


def pooled_rows(run_dirs: list[Path]) -> list:
    rows = []
    for run_dir in run_dirs:
        try:
            store = ResultStore.existing(run_dir)
        except FileNotFoundError as error:
            raise SystemExit(str(error)) from None
        with store:
            rows += collect_rows(store)
    return rows


def main() -> None:
    args = parse_args()
    ranked = ranked_settings(pooled_rows(args.run_dirs), args.alpha)
    if not ranked:
        raise SystemExit("no setting with finished evaluations on at least 2 cells per method in these folders")
    print(f"Paired two-sided t-tests over shared cells at alpha = {args.alpha}; each verdict is Holm-corrected "
          "within its column of a setting, the p-value shown is the uncorrected one.\n")
    if args.compact:
        print("\n".join(compact_table(ranked)))
        return
    for (task, corpus, scenario), ranking in ranked:
        print(f"#### {TASK_TITLES.get(task, task)} on {corpus}: {SCENARIO_TITLES.get(scenario, scenario)}\n")
        print("\n".join(detailed_table(ranking)) + "\n")


if __name__ == "__main__":
    main()
