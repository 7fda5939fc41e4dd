"""Rank methods by a per-cell score and say which differences a paired test can tell apart.

A cell is one forget split of one (backbone, seed): every method of a grid is run on the same
cells, so two methods are compared cell by cell (a paired design), which removes the spread
that comes from the seeds and splits themselves. The score is lower-is-better (Avg. Gap to
Retrain in the benchmark).

The test: a two-sided paired t-test of the per-cell differences (scipy's `ttest_rel`) at level
alpha (default 0.05). A rank-sign test would be the robust choice, but with 5 cells its smallest
two-sided p-value is 2 / 2^5 = 0.0625, so it could never reject at 5 %; the t-test can, at the
price of assuming roughly normal differences, which the report states. Two families of tests are
made per setting, each corrected with Holm's step-down method so that the chance of any false
"significant" within the family stays at alpha:
- adjacent pairs in the ranking (is rank i really ahead of rank i + 1?);
- each method against doing nothing (the Original's own score): a method that cannot be told
  from the Original has not shown measurable forgetting on these cells.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Mapping, Sequence

from scipy import stats

DO_NOTHING = "original"


@dataclass(frozen=True)
class PairedTest:
    """Paired comparison of `better` (the lower mean) with `worse` on their shared cells."""

    better: str
    worse: str
    cells: int
    mean_difference: float  # mean of worse - better, >= 0
    p_value: float | None  # None: fewer than 2 shared cells, or no spread and no difference
    significant: bool | None = None  # after Holm's correction within the family; None: untested


@dataclass(frozen=True)
class RankedMethod:
    method: str
    mean: float
    std: float | None
    cells: int


@dataclass(frozen=True)
class Ranking:
    methods: list[RankedMethod]  # ascending mean score
    adjacent: list[PairedTest]  # adjacent[i] compares methods[i] with methods[i + 1]
    against_nothing: dict[str, PairedTest]  # method -> test against the Original (if present)
    alpha: float


def paired_test(first: str, second: str, scores: Mapping[str, Mapping[object, float]]) -> PairedTest:
    """Two-sided paired t-test on the cells both methods share; `better` is the lower mean."""
    shared = sorted(set(scores[first]) & set(scores[second]), key=repr)
    a = [scores[first][cell] for cell in shared]
    b = [scores[second][cell] for cell in shared]
    if statistics.fmean(a or [0.0]) > statistics.fmean(b or [0.0]):
        first, second, a, b = second, first, b, a
    differences = [y - x for x, y in zip(a, b)]
    mean_difference = statistics.fmean(differences) if differences else 0.0
    p_value = None
    if len(differences) >= 2:
        if statistics.pstdev(differences) > 0:
            p_value = float(stats.ttest_rel(b, a).pvalue)
        elif mean_difference > 0:
            p_value = 0.0  # the same non-zero difference in every cell
    return PairedTest(first, second, len(shared), mean_difference, p_value)


def holm(tests: Sequence[PairedTest], alpha: float) -> list[PairedTest]:
    """Holm's step-down correction: the k-th smallest p-value is compared with alpha / (m - k)
    and testing stops at the first that fails. Untestable pairs stay untested."""
    testable = sorted((t for t in tests if t.p_value is not None), key=lambda t: t.p_value)
    verdicts: dict[int, bool] = {}
    rejecting = True
    for k, test in enumerate(testable):
        rejecting = rejecting and test.p_value <= alpha / (len(testable) - k)
        verdicts[id(test)] = rejecting
    return [PairedTest(t.better, t.worse, t.cells, t.mean_difference, t.p_value, verdicts.get(id(t)))
            for t in tests]


def rank_methods(scores: Mapping[str, Mapping[object, float]], alpha: float = 0.05) -> Ranking:
    """Rank by mean score over each method's cells; test adjacent pairs and each method against
    the Original (`DO_NOTHING`), each family with Holm's correction."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    finite = {name: {cell: float(v) for cell, v in cells.items() if v is not None and math.isfinite(v)}
              for name, cells in scores.items()}
    finite = {name: cells for name, cells in finite.items() if cells}
    ranked = sorted(
        (RankedMethod(name, statistics.fmean(cells.values()),
                      statistics.stdev(cells.values()) if len(cells) > 1 else None, len(cells))
         for name, cells in finite.items()),
        key=lambda row: (row.mean, row.method),
    )
    adjacent = holm([paired_test(a.method, b.method, finite) for a, b in zip(ranked, ranked[1:])], alpha)
    others = [row.method for row in ranked if row.method != DO_NOTHING]
    against = holm([paired_test(name, DO_NOTHING, finite) for name in others], alpha) if DO_NOTHING in finite else []
    against_nothing = {name: test for name, test in zip(others, against)}
    return Ranking(ranked, adjacent, against_nothing, alpha)


def verdict(test: PairedTest | None) -> str:
    """A table cell: the p-value and whether the difference is significant after correction."""
    if test is None:
        return ""
    if test.p_value is None:
        return f"not testable ({test.cells} cell{'s' if test.cells != 1 else ''})"
    word = "yes" if test.significant else "no"
    return f"{word} (p = {test.p_value:.3f})"
