"""Method ranking with paired tests: consistent differences are found, noise is not, Holm holds."""

import numpy as np
import pytest

from speech_unlearning.evaluation.ranking import DO_NOTHING, holm, paired_test, rank_methods, verdict, PairedTest


def scores_of(means: dict[str, float], cells: int = 8, noise: float = 0.1, seed: int = 0) -> dict:
    """Per-cell scores: a shared cell effect (which pairing removes) plus a little method noise."""
    rng = np.random.default_rng(seed)
    cell_effect = rng.normal(0, 5.0, cells)  # far larger than the method differences
    return {name: {("cell", i): float(mean + cell_effect[i] + rng.normal(0, noise)) for i in range(cells)}
            for name, mean in means.items()}


def test_consistent_difference_is_significant_despite_large_cell_spread():
    scores = scores_of({"good": 1.0, "bad": 3.0})
    ranking = rank_methods(scores)
    assert [row.method for row in ranking.methods] == ["good", "bad"]
    (test,) = ranking.adjacent
    assert test.better == "good" and test.significant
    assert test.mean_difference == pytest.approx(2.0, abs=0.2)


def test_methods_that_differ_only_by_noise_are_not_told_apart():
    scores = scores_of({"a": 2.0, "b": 2.0}, noise=1.0, seed=3)
    (test,) = rank_methods(scores).adjacent
    assert test.p_value > 0.05 and test.significant is False


def test_do_nothing_is_the_line_to_beat():
    scores = scores_of({DO_NOTHING: 5.0, "forgets": 1.0, "no-op": 5.0}, noise=0.5, seed=1)
    ranking = rank_methods(scores)
    assert ranking.against_nothing["forgets"].significant
    assert not ranking.against_nothing["no-op"].significant
    assert DO_NOTHING not in ranking.against_nothing


def test_pairs_use_only_shared_cells():
    scores = {"a": {1: 1.0, 2: 2.0, 3: 3.0}, "b": {2: 2.5, 3: 3.5, 4: 100.0}}
    test = paired_test("a", "b", scores)
    assert test.cells == 2 and test.mean_difference == pytest.approx(0.5)
    assert test.p_value == 0.0  # the same difference in both shared cells


def test_one_shared_cell_is_not_testable():
    test = paired_test("a", "b", {"a": {1: 1.0}, "b": {1: 2.0}})
    assert test.p_value is None
    assert verdict(test).startswith("not testable")


def test_holm_compares_the_kth_smallest_p_with_alpha_over_remaining():
    tests = [PairedTest("x", "y", 5, 1.0, p) for p in (0.01, 0.04, 0.03)]
    corrected = holm(tests, alpha=0.05)
    # sorted: 0.01 <= 0.05/3 yes; 0.03 <= 0.05/2 no; then every later one fails too
    assert [t.significant for t in corrected] == [True, False, False]
    assert holm([PairedTest("x", "y", 1, 0.0, None)], 0.05)[0].significant is None


def test_bad_alpha_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        rank_methods({"a": {1: 1.0}}, alpha=1.5)


class Row:
    """The fields of the report's evaluation rows that the ranking section reads."""

    def __init__(self, method: str, seed: int, gap: float, scenario: str = "class"):
        self.task, self.corpus, self.scenario, self.method = "kws", "embedded", scenario, method
        self.cell = ("kws-resnet", seed, f"{scenario} x1", "epochs")
        self.values = {"avg_gap": gap}


def test_the_report_section_ranks_each_setting_and_names_who_beats_doing_nothing():
    from speech_unlearning.experiments.ranking_report import ranking_markdown

    rng = np.random.default_rng(0)
    rows = [Row(method, seed, base + rng.normal(0, 0.2))
            for seed in range(5)
            for method, base in (("original", 40.0), ("forgets", 1.0), ("half", 20.0), ("retrain", 0.0))]
    text = "\n".join(ranking_markdown(rows))
    line = next(l for l in text.splitlines() if l.startswith("| kws class"))
    assert "forgets < half < **Original**" in line  # consistent gaps of 19-20 pp over 5 cells
    assert line.rstrip(" |").endswith("forgets, half") and "retrain" not in line
    one_seed = [row for row in rows if row.cell[1] == 0]
    assert ranking_markdown(one_seed) == []  # nothing to test with one cell
