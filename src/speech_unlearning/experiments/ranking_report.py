"""The report's ranking section: per setting, methods ordered by Avg. Gap with paired tests.

A setting is (task, corpus, scenario); a cell one forget split of one (backbone, seed, kind of
Retrain), whose score is the mean Avg. Gap of the method's runs on it (several with
`unlearn_seeds`). The tests are evaluation.ranking's: two-sided paired t-tests over shared
cells, Holm-corrected, between neighbours and against doing nothing (the Original). Retrain (0
by definition) is left out. A setting needs at least 2 shared cells (seeds) to be tested.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any, Iterable, Sequence

from ..evaluation.ranking import DO_NOTHING, Ranking, rank_methods, verdict

MIN_CELLS = 2


def setting_scores(rows: Iterable[Any], score: str = "avg_gap") -> dict[tuple, dict[str, dict[tuple, float]]]:
    """setting -> method -> cell -> mean score, from the report's evaluation rows."""
    pooled: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for row in rows:
        value = row.values.get(score)
        if row.method == "retrain" or value is None:
            continue
        pooled[(row.task, row.corpus, row.scenario)][row.method][row.cell].append(value)
    return {setting: {method: {cell: statistics.fmean(values) for cell, values in cells.items()}
                      for method, cells in methods.items()}
            for setting, methods in pooled.items()}


def _name(method: str) -> str:
    return "**Original**" if method == DO_NOTHING else method


def order_text(ranking: Ranking) -> str:
    """'a ~ b < c': neighbours joined by '<' where the paired test separates them, '~' where not."""
    text = _name(ranking.methods[0].method)
    for test, row in zip(ranking.adjacent, ranking.methods[1:]):
        text += (" < " if test.significant else " ~ ") + _name(row.method)
    return text


def beats_nothing(ranking: Ranking) -> list[str]:
    return [name for name, test in ranking.against_nothing.items() if test.significant and test.better != DO_NOTHING]


def ranked_settings(rows: Iterable[Any], alpha: float = 0.05, score: str = "avg_gap") -> list[tuple[tuple, Ranking]]:
    """Every setting with at least MIN_CELLS cells per method, ranked."""
    ranked = []
    for setting, scores in sorted(setting_scores(rows, score).items()):
        if scores and min(len(cells) for cells in scores.values()) >= MIN_CELLS:
            ranked.append((setting, rank_methods(scores, alpha)))
    return ranked


def compact_table(ranked: Sequence[tuple[tuple, Ranking]]) -> list[str]:
    lines = ["| Setting | Cells | Lowest Avg. Gap first ('<' significant, '~' not) | Significantly closer to Retrain than doing nothing |",
             "|---|---|---|---|"]
    for (task, corpus, scenario), ranking in ranked:
        cells = min(row.cells for row in ranking.methods)
        lines.append(f"| {task} {scenario} on {corpus} | {cells} | {order_text(ranking)} | "
                     f"{', '.join(beats_nothing(ranking)) or 'none'} |")
    return lines


def detailed_table(ranking: Ranking, title: str = "Avg. Gap (pp)") -> list[str]:
    lines = [f"| Rank | Method | {title}, mean ± std over cells | Cells | Ahead of the next | Beats doing nothing |",
             "|---|---|---|---|---|---|"]
    for rank, row in enumerate(ranking.methods):
        spread = "" if row.std is None else f" ± {row.std:.2f}"
        ahead = verdict(ranking.adjacent[rank]) if rank < len(ranking.adjacent) else ""
        lines.append(f"| {rank + 1} | {_name(row.method)} | {row.mean:.2f}{spread} | {row.cells} | {ahead} | "
                     f"{_against_nothing(ranking, row.method)} |")
    return lines


def _against_nothing(ranking: Ranking, method: str) -> str:
    if method == DO_NOTHING:
        return "(the Original)"
    test = ranking.against_nothing.get(method)
    if test is None:
        return ""
    if test.better == DO_NOTHING:  # the method is further from Retrain than the Original
        return ("worse, significant" if test.significant else "worse, not significant") + \
            ("" if test.p_value is None else f" (p = {test.p_value:.3f})")
    return verdict(test)


def ranking_markdown(rows: Iterable[Any], alpha: float = 0.05) -> list[str]:
    """The report section; empty when no setting has enough cells to test."""
    ranked = ranked_settings(rows, alpha)
    if not ranked:
        return []
    return ["## Ranking", "",
            f"Per setting, methods by mean Avg. Gap over cells (forget splits x seeds), with two-sided paired "
            f"t-tests over shared cells at alpha = {alpha}, Holm-corrected per setting: between neighbours "
            f"('<' where significant) and against doing nothing (the Original). '~' means not shown "
            f"different with this many cells, not equal.", "",
            *compact_table(ranked), ""]
