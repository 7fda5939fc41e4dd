"""Benchmark reports from a small hand-made results database."""

from __future__ import annotations

import base64
import csv
import io
import re

import numpy as np
import pytest

from speech_unlearning.cli.main import main
from speech_unlearning.experiments.plan import Run
from speech_unlearning.experiments.report import TABLE_COLUMNS, aggregate, collect_rows, write_report_files
from speech_unlearning.experiments.store import ResultStore

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Df accuracy of "scrub" in the four sample-unlearning runs (2 seeds x 2 ratios).
SCRUB_DF = [0.10, 0.20, 0.30, 0.45]


def metrics(df: float, dr: float = 0.9, test: float = 0.85, loss_mia: float = 0.6, svc: float = 0.3,
            seconds: float | None = 1.0, ratio: float | None = 0.1, gap: float | None = 5.0) -> dict:
    table = {"accuracy": {"df": df, "dr": dr, "test": test}, "loss_mia": {"accuracy": loss_mia},
             "svc_mia": {"confidence": svc}}
    if seconds is not None:
        table["time"] = {"unlearn_seconds": seconds, "ratio": ratio}
    return {"metrics": table, "avg_gap_pp": gap}


def add(store: ResultStore, method: str, seed: int, split: dict, values: dict, status: str = "done",
        model: str = "kws-resnet", task: str = "kws") -> Run:
    run = Run("evaluate", {"stage": "evaluate", "task": task, "corpus": "embedded", "model": model, "seed": seed,
                           "split": split, "method": method})
    store.ensure([run])
    store.mark_running(run)
    if status == "done":
        store.mark_done(run, values, {}, 1.0)
    else:
        store.mark_failed(run, "RuntimeError: out of memory\n\ntraceback")
    return run


def sample(ratio: float, seed: int) -> dict:
    return {"scenario": "sample", "ratio": ratio, "seed": seed, "role": "test"}


@pytest.fixture
def run_dir(tmp_path):
    with ResultStore.in_folder(tmp_path) as store:
        scrub = iter(SCRUB_DF)
        for seed in (0, 1):
            for ratio in (0.01, 0.05):
                split = sample(ratio, seed)
                add(store, "original", seed, split, metrics(0.99, seconds=None, gap=30.0))
                add(store, "retrain", seed, split, metrics(0.84, seconds=20.0, ratio=1.0, gap=0.0))
                add(store, "scrub", seed, split, metrics(next(scrub), seconds=2.0 + seed, ratio=0.1 + 0.05 * seed))
                add(store, "scrub+superloss", seed, split, metrics(0.5))
        class_split = {"scenario": "class", "count": 1, "seed": 0, "role": "test"}
        add(store, "retrain", 0, class_split, metrics(0.0, gap=0.0))
        add(store, "gradascent", 0, class_split, metrics(0.02, dr=0.3))
        add(store, "gradascent", 1, class_split, {}, status="failed")
        # A tuning evaluation on a validation split never enters the test tables.
        add(store, "scrub", 0, {**sample(0.05, 10_000), "role": "validation"}, metrics(0.77))
    return tmp_path


def test_rows_are_grouped_by_scenario_with_references_first(run_dir):
    with ResultStore.in_folder(run_dir) as store:
        (table,) = aggregate(collect_rows(store))
    order = [(row.scenario, row.method) for row in table.rows]
    assert order == [("sample", "original"), ("sample", "retrain"), ("sample", "scrub"),
                     ("sample", "scrub+superloss"), ("class", "retrain"), ("class", "gradascent")]
    assert table.seeds == (0, 1) and table.ratios == (0.01, 0.05) and table.models == ("kws-resnet",)


def test_mean_and_sample_std_over_seeds_and_ratios(run_dir):
    with ResultStore.in_folder(run_dir) as store:
        (table,) = aggregate(collect_rows(store))
    scrub = next(row for row in table.rows if row.method == "scrub")
    expected = np.array(SCRUB_DF) * 100
    assert scrub.runs == 4
    assert scrub.cells["df"].mean == pytest.approx(expected.mean())
    assert scrub.cells["df"].std == pytest.approx(expected.std(ddof=1))
    assert scrub.cells["seconds"].mean == pytest.approx(2.5)
    assert scrub.cells["dr"].std == pytest.approx(0.0)
    gradascent = next(row for row in table.rows if row.method == "gradascent")
    assert gradascent.runs == 1 and gradascent.cells["df"].std is None  # one run: no spread
    original = next(row for row in table.rows if row.method == "original")
    assert original.cells["seconds"].mean is None  # Original has no unlearning time


def test_gap_of_the_means_compares_averages_over_the_same_runs(run_dir):
    with ResultStore.in_folder(run_dir) as store:
        (table,) = aggregate(collect_rows(store))
    rows = {(row.scenario, row.method): row for row in table.rows}
    # Only Df differs from Retrain (0.84 in every run); the other three terms are equal.
    expected = abs(np.mean(SCRUB_DF) - 0.84) * 100 / 4
    assert rows["sample", "scrub"].cells["gap_of_means"].mean == pytest.approx(expected)
    assert rows["sample", "scrub"].cells["gap_of_means"].n == 4
    assert rows["sample", "retrain"].cells["gap_of_means"].mean == pytest.approx(0.0)
    # The failed gradascent run has no metrics: the one finished run is compared with Retrain's.
    assert rows["class", "gradascent"].cells["gap_of_means"].n == 1
    assert rows["class", "gradascent"].cells["gap_of_means"].mean == pytest.approx((2 + 60) / 4)


def test_errors_in_both_directions_cancel_in_the_gap_of_the_means(tmp_path):
    with ResultStore.in_folder(tmp_path) as store:
        for seed, offset in ((0, 0.1), (1, -0.1)):
            split = sample(0.05, seed)
            add(store, "retrain", seed, split, metrics(0.8))
            add(store, "noisy", seed, split, metrics(0.8 + offset))
        # A run without a Retrain of the same seed and split is left out of the comparison.
        add(store, "noisy", 2, sample(0.05, 2), metrics(0.0))
        (table,) = aggregate(collect_rows(store))
    noisy = next(row for row in table.rows if row.method == "noisy")
    assert noisy.cells["gap_of_means"].mean == pytest.approx(0.0, abs=1e-9)
    assert noisy.cells["gap_of_means"].n == 2


def test_report_files_tables_csv_html_and_plots(run_dir):
    paths = write_report_files(run_dir)
    markdown = paths["markdown"].read_text()
    for title in ("Sample unlearning", "Class unlearning", "Original", "Retrain", "scrub+superloss", "gradascent"):
        assert title in markdown
    for column in TABLE_COLUMNS:
        assert column.title in markdown
    expected = np.array(SCRUB_DF) * 100
    scrub_line = next(line for line in markdown.splitlines() if line.startswith("| scrub |"))
    assert f"{expected.mean():.1f} ± {expected.std(ddof=1):.1f}" in scrub_line
    original_line = next(line for line in markdown.splitlines() if line.startswith("| Original |"))
    assert "NA" in original_line
    assert "Failed runs (1)" in markdown and "out of memory" in markdown

    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    scrub = next(r for r in rows if r["method"] == "scrub" and r["scenario"] == "sample")
    assert float(scrub["df_mean"]) == pytest.approx(expected.mean())
    assert float(scrub["df_std"]) == pytest.approx(expected.std(ddof=1), rel=1e-5)
    runs = list(csv.DictReader(io.StringIO(paths["runs_csv"].read_text())))
    assert len(runs) == 18  # every done test-split evaluation, none of the validation one

    plots = sorted((run_dir / "report" / "plots").glob("*.png"))
    assert [p.name for p in plots] == sorted(["kws-embedded-forgetting-vs-utility.png",
                                              "kws-embedded-metrics-vs-ratio.png", "kws-embedded-time-vs-gap.png"])
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in plots)

    page = paths["html"].read_text()
    assert "<style>" in page and "<link" not in page and "<script" not in page
    assert not re.search(r"(src|href)=\"(?!data:)", page)  # nothing is fetched from elsewhere
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(plots)
    assert all(base64.b64decode(data).startswith(PNG_SIGNATURE) for data in images)


def test_the_caption_says_how_long_the_retrain_trained(tmp_path):
    """Grids made with retrain_match=steps say so above their tables; the default says epochs."""
    with ResultStore.in_folder(tmp_path) as store:
        split = sample(0.05, 0)
        retrain = Run("retrain", {"stage": "retrain", "task": "kws", "corpus": "embedded", "model": "kws-resnet",
                                  "seed": 0, "split": split, "train": {"epochs": 2, "match": "steps"}})
        store.ensure([retrain])
        store.mark_running(retrain)
        store.mark_done(retrain, {}, {}, 1.0)
        for method in ("original", "retrain"):
            run = Run("evaluate", {"stage": "evaluate", "task": "kws", "corpus": "embedded", "model": "kws-resnet",
                                   "seed": 0, "split": split, "method": method, "retrain": retrain.key})
            store.ensure([run])
            store.mark_running(run)
            store.mark_done(run, metrics(0.9), {}, 1.0)
        add(store, "retrain", 0, {"scenario": "class", "count": 1, "seed": 0, "role": "test"}, metrics(0.0), task="sid")
    markdown = write_report_files(tmp_path, plots=False)["markdown"].read_text()
    captions = [line for line in markdown.splitlines() if line.startswith("Backbones:")]
    assert len(captions) == 2
    assert "Retrain: the Original's number of optimiser steps on Dr (retrain_match=steps)." in captions[0]  # kws
    assert "Retrain: the Original's epochs on Dr." in captions[1]  # sid, whose evaluation names no retrain run


def test_report_command_writes_the_files(run_dir, capsys):
    assert main(["report", str(run_dir), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "| scrub |" in out and "report.html" in out
    assert (run_dir / "report" / "report.html").is_file()
    assert not (run_dir / "report" / "plots").exists()


def test_report_of_a_folder_without_database_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no results database" in capsys.readouterr().err


def test_two_configurations_of_one_method_get_rows_of_their_own(tmp_path):
    with ResultStore.in_folder(tmp_path) as store:
        for seed in (0, 1):
            split = sample(0.05, seed)
            add(store, "retrain", seed, split, metrics(0.8))
            for overrides, df in (({}, 0.99), ({"lr": 1e-3, "epochs": 2}, 0.8)):
                unlearn = Run("unlearn", {"stage": "unlearn", "seed": seed, "split": split, "method": "scrub",
                                          "hyper": {"overrides": overrides}})
                store.ensure([unlearn])
                run = Run("evaluate", {"stage": "evaluate", "task": "kws", "corpus": "embedded", "model": "kws-resnet",
                                       "seed": seed, "split": split, "method": "scrub", "subject": unlearn.key})
                store.ensure([run])
                store.mark_done(run, metrics(df), {}, 1.0)
        (table,) = aggregate(collect_rows(store))
    rows = {row.method: row for row in table.rows}
    assert set(rows) == {"retrain", "scrub", "scrub [epochs=2, lr=0.001]"}
    assert rows["scrub"].runs == 2 and rows["scrub"].cells["df"].mean == pytest.approx(99.0)
    assert rows["scrub [epochs=2, lr=0.001]"].cells["gap_of_means"].mean == pytest.approx(0.0)


def test_a_folder_with_both_kinds_of_retrain_gets_a_table_for_each(tmp_path):
    """Each evaluation is compared with its own Retrain: pooled, the step-matched Retrain's row
    would overwrite the other's and half the gaps would be measured to the wrong model."""
    with ResultStore.in_folder(tmp_path) as store:
        split = sample(0.05, 0)
        for match, retrain_df in (("epochs", 0.80), ("steps", 0.90)):
            retrain = Run("retrain", {"stage": "retrain", "task": "kws", "corpus": "embedded", "model": "kws-resnet",
                                      "seed": 0, "split": split, "train": {"epochs": 2, "match": match}})
            store.ensure([retrain])
            store.mark_done(retrain, {}, {}, 1.0)
            for method, df in (("retrain", retrain_df), ("scrub", 0.85)):
                run = Run("evaluate", {"stage": "evaluate", "task": "kws", "corpus": "embedded", "model": "kws-resnet",
                                       "seed": 0, "split": split, "method": method, "retrain": retrain.key})
                store.ensure([run])
                store.mark_done(run, metrics(df), {}, 1.0)
        tables = aggregate(collect_rows(store))
    assert [table.title for table in tables] == [
        "Keyword spotting (kws) on embedded", "Keyword spotting (kws) on embedded, against the step-matched Retrain"]
    for table, retrain_df in zip(tables, (80.0, 90.0)):
        rows = {row.method: row for row in table.rows}
        assert rows["retrain"].runs == 1 and rows["retrain"].cells["df"].mean == pytest.approx(retrain_df)
        assert rows["scrub"].cells["gap_of_means"].mean == pytest.approx(5.0 / 4)


@pytest.mark.parametrize("method", ["calibrated", "gradascent", "scrub", "finetune"])
def test_the_report_says_which_attacks_a_methods_objective_touches(tmp_path, method):
    """Each method row's attacks follow from what its objective reads (`Method.objective_reads`)
    and what each attack decides on (`Metric.reads`); the note names the independent evidence."""
    from speech_unlearning.evaluation import METRICS
    from speech_unlearning.experiments.report import objective_touches
    from speech_unlearning.methods import METHODS

    quantities = set(METHODS.get(method).objective_reads)
    expected = [name for name in METRICS.names() if quantities & set(METRICS.get(name).reads)]
    with ResultStore.in_folder(tmp_path) as store:
        add(store, "retrain", 0, sample(0.05, 0), metrics(0.8))
        add(store, method, 0, sample(0.05, 0), metrics(0.7))
    paths = write_report_files(tmp_path, plots=False)
    (note,) = [line for line in paths["markdown"].read_text().splitlines() if "objective touches" in line]
    titles = {"loss_mia": "Loss-MIA", "svc_mia": "SVC MIA"}
    if expected:
        assert f"{method}: {', '.join(titles[name] for name in expected)}" in note
    else:
        assert f"none: {method}" in note
    assert "U-LiRA, the forgetting score and the informed attack are the independent evidence" in note
    assert objective_touches(f"{method} [lr=0.001]") == objective_touches(method) == tuple(expected)
    row = next(r for r in csv.DictReader(io.StringIO(paths["csv"].read_text())) if r["method"] == method)
    assert row["objective_touches"] == (" ".join(expected) or "none")


def test_the_loss_attacks_read_what_calibrated_optimises_and_nothing_reads_an_unknown_quantity():
    from speech_unlearning.evaluation import METRICS, metrics_reading
    from speech_unlearning.methods.base import OBJECTIVE_QUANTITIES

    assert set(metrics_reading(["forget_loss", "heldout_loss"])) == {"loss_mia", "svc_mia"}
    assert metrics_reading([]) == []
    for name in METRICS.names():
        assert set(METRICS.get(name).reads) <= OBJECTIVE_QUANTITIES.keys(), name


def test_the_relearn_columns_show_the_attack_early_and_at_the_end_of_its_schedule(tmp_path):
    from speech_unlearning.experiments.report import RELEARN

    relearn = {"scrub": (0.30, 0.70), "retrain": (0.10, 0.40)}
    with ResultStore.in_folder(tmp_path) as store:
        for method, (early, after) in relearn.items():
            values = metrics(0.8)
            values["metrics"]["relearn"] = {"before": 0.0, "early": early, "after": after}
            add(store, method, 0, sample(0.05, 0), values)
        (table,) = aggregate(collect_rows(store))
    rows = {row.method: row for row in table.rows}
    for method, (early, after) in relearn.items():
        assert rows[method].cells["relearn_early"].mean == pytest.approx(100 * early)
        assert rows[method].cells["relearn_end"].mean == pytest.approx(100 * after)
    markdown = write_report_files(tmp_path, plots=False)["markdown"].read_text()
    assert f"Relearn: Df acc. at step {RELEARN.early_at} (%)" in markdown
    assert f"Relearn: Df acc. at step {RELEARN.steps}, the end (%)" in markdown
    assert RELEARN.early_at < RELEARN.steps


def test_a_method_stopped_by_its_budget_is_reported_capped_next_to_its_planned_schedule(tmp_path):
    # scrub: one run cut by the budget, one that finished; gradascent: every run finished.
    runs = {"scrub": [(120, 400, True), (400, 400, False)], "gradascent": [(50, 50, False), (60, 60, False)]}
    with ResultStore.in_folder(tmp_path) as store:
        for method, schedules in runs.items():
            for seed, (steps, planned, capped) in enumerate(schedules):
                split = sample(0.05, seed)
                if method == "scrub":
                    add(store, "retrain", seed, split, metrics(0.8))
                unlearn = Run("unlearn", {"stage": "unlearn", "seed": seed, "split": split, "method": method})
                store.ensure([unlearn])
                store.mark_done(unlearn, {"steps": steps, "planned_steps": planned, "budget_exhausted": capped}, {}, 1.0)
                run = Run("evaluate", {"stage": "evaluate", "task": "kws", "corpus": "embedded", "model": "kws-resnet",
                                       "seed": seed, "split": split, "method": method, "subject": unlearn.key})
                store.ensure([run])
                store.mark_done(run, metrics(0.7), {}, 1.0)
        (table,) = aggregate(collect_rows(store))
    rows = {row.method: row for row in table.rows}
    assert rows["scrub"].schedule == "capped at 120 of 400 steps (1 of 2 runs)"
    assert rows["gradascent"].schedule == "50-60 of 50-60"  # nothing capped: steps taken of steps planned
    assert rows["retrain"].schedule == ""
    paths = write_report_files(tmp_path, plots=False)
    lines = paths["markdown"].read_text().splitlines()
    assert any(line.startswith("| scrub |") and "capped at 120 of 400 steps" in line for line in lines)
    assert any(line.startswith("| Retrain |") and "| — |" in line for line in lines)
    assert any("Steps (of planned)" in line and "capped at N of M steps" in line for line in lines)
    per_run = list(csv.DictReader(io.StringIO(paths["runs_csv"].read_text())))
    capped = {(r["method"], r["seed"]): r["capped"] for r in per_run if r["method"] != "retrain"}
    assert capped == {("scrub", "0"): "1", ("scrub", "1"): "0", ("gradascent", "0"): "0", ("gradascent", "1"): "0"}
