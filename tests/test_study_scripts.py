"""The benchmark scripts (benchmarks/): bad input gets a clear one-line exit and nothing written;
the targets check's bootstrap intervals; the one-command reproduction of the targets experiment."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = PROJECT_ROOT / "benchmarks"


def run_script(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=PROJECT_ROOT)


@pytest.mark.parametrize(
    "script",
    ["validation_study.py", "retrain_noise.py", "unlearning_targets.py", "step_matched_retrain.py", "rank_methods.py"],
)
def test_a_folder_without_results_is_refused_and_left_empty(tmp_path, script):
    folder = tmp_path / "not_a_grid"
    folder.mkdir()
    args = [str(folder), "calibrated", "[{}]"] if script == "validation_study.py" else [str(folder)]
    done = run_script(script, *args)
    assert done.returncode != 0
    assert f"no results database in {folder}" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(folder.iterdir()) == []  # opening a results store would have created runs.sqlite


@pytest.mark.parametrize(
    "method, overrides, named", [("calibrated", '[{}, {"lrr": 1}]', "'lrr'"), ("calibratd", "[{}]", "'calibratd'")]
)
def test_validation_study_names_a_bad_method_or_override_before_reading_any_grid(tmp_path, method, overrides, named):
    done = run_script("validation_study.py", str(tmp_path / "missing"), method, overrides)
    assert done.returncode != 0
    assert named in done.stderr and "Traceback" not in done.stderr
    assert "no results database" not in done.stderr  # the override check comes first


def benchmark_module(name: str):
    """A script of benchmarks/ imported as a module (they import their shared helpers by name)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def targets_script():
    return benchmark_module("unlearning_targets")


def test_the_bootstrap_interval_brackets_the_runs_and_needs_five_seeds(targets_script):
    rows = [{"gap": gap, "seed": seed} for seed, gap in enumerate((0.4, 0.9, 1.2, 1.6, 2.5, 3.1, 4.0, 6.2))]
    low, high = targets_script.bootstrap_interval(rows, targets_script.mean_gap)
    mean = targets_script.mean_gap(rows)
    assert min(row["gap"] for row in rows) < low < mean < high < max(row["gap"] for row in rows)
    assert targets_script.bootstrap_interval(rows, targets_script.mean_gap) == (low, high)  # seeded
    agreeing = [{"gap": 5.0, "seed": seed} for seed in range(8)]
    assert targets_script.bootstrap_interval(agreeing, targets_script.mean_gap) == (5.0, 5.0)
    assert targets_script.bootstrap_interval(rows[:4], targets_script.mean_gap) is None


def test_the_bootstrap_resamples_seeds_with_all_their_runs(targets_script):
    """Runs of one seed share an Original and move together: resampling them one by one would
    narrow the interval as if they were independent."""
    seed_means = (0.4, 0.9, 1.2, 1.6, 2.5, 3.1, 4.0, 6.2)
    rows = [{"gap": mean + offset, "seed": seed}
            for seed, mean in enumerate(seed_means) for offset in (-0.1, 0.0, 0.1)]  # 3 ratios per seed
    one_by_one = [dict(row, seed=position) for position, row in enumerate(rows)]
    by_seed = targets_script.bootstrap_interval(rows, targets_script.mean_gap)
    by_run = targets_script.bootstrap_interval(one_by_one, targets_script.mean_gap)
    assert (by_seed[1] - by_seed[0]) > 1.4 * (by_run[1] - by_run[0])  # about sqrt(3) wider
    assert targets_script.bootstrap_interval(rows[:12], targets_script.mean_gap) is None  # 12 runs, but 4 seeds


@pytest.mark.parametrize(
    "interval, where", [((1.6, 2.4), "above"), ((0.3, 1.5), "below"), ((0.9, 2.1), "straddles"), (None, None)]
)
def test_the_verdict_says_where_the_interval_lies_against_the_target(targets_script, interval, where):
    text = targets_script.gap_check("gap of the means", 1.57, interval)
    assert text.startswith("gap of the means 1.57 pp > 1.5")
    if where is None:
        assert "interval" not in text
    else:
        assert f"{where} the target" in text and text.endswith(")")


def test_a_straddling_verdict_says_how_many_seeds_would_settle_it(targets_script):
    # 1.2 pp on 5 seeds, its upper bound 0.6 above the estimate and the target 0.3 above it: the
    # bound must come 2x closer, which takes 4x the seeds.
    assert targets_script.seeds_to_settle(1.2, (0.8, 1.8), 5) == 20
    assert "about 20 seeds would settle it)" in targets_script.gap_check("gap", 1.2, (0.8, 1.8), 5)
    # Above the target, the lower bound is the one to move.
    assert targets_script.seeds_to_settle(2.0, (1.0, 2.1), 5) == 20
    # An estimate on the target is never settled; a settled interval gets no count.
    assert "no number of seeds" in targets_script.gap_check("gap", 1.5, (1.0, 2.0), 5)
    assert "seeds" not in targets_script.gap_check("gap", 2.0, (1.6, 2.4), 5)
    assert "seeds" not in targets_script.gap_check("gap", 1.2, (0.8, 1.8))  # no seed count, no claim


def test_the_targets_experiment_runs_with_one_command(tmp_path, cache_dir, embedded_kws, fsdd_kws, fsdd_root):
    """Both presets' grids, then their targets, from one call (shrunk here to one keyword class
    request per preset, one training epoch, calibrated and the references). A relative RUNS_DIR
    is the caller's."""
    runs = tmp_path / "runs"
    done = subprocess.run(
        ["bash", str(BENCHMARKS / "reproduce_targets.sh"), "runs", "--cache-dir", str(cache_dir),
         "--set", f"fsdd={fsdd_root}", "--set", "tasks=kws", "--set", "scenarios=class", "--set", "seeds=0",
         "--set", "epochs=1", "--set", "methods=calibrated"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for preset in ("quick", "fsdd"):
        assert (runs / preset / "runs.sqlite").is_file()
        section = done.stdout.split(f"## Targets: {preset}")[1].split("## Targets:")[0]
        assert "### kws · class unlearning" in section
        verdict = next(line for line in section.splitlines() if line.startswith("calibrated: Avg. Gap"))
        assert "forgotten class 0.0 %" in verdict  # a real unlearning run, scored against its Retrain


def test_the_one_command_explains_itself_and_runs_nothing_on_help(tmp_path):
    done = subprocess.run(["bash", str(BENCHMARKS / "reproduce_targets.sh"), "--help"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0
    assert "bash benchmarks/reproduce_targets.sh [RUNS_DIR]" in done.stdout and "set -euo" not in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_the_targets_check_keeps_runs_against_a_step_matched_retrain_apart(targets_script, tmp_path):
    from speech_unlearning.experiments.plan import Run
    from speech_unlearning.experiments.store import ResultStore

    split = {"scenario": "sample", "ratio": 0.05, "seed": 0, "role": "test"}
    with ResultStore.in_folder(tmp_path) as store:
        settings = []
        for match in ("epochs", "steps"):
            retrain = Run("retrain", {"task": "kws", "seed": 0, "split": split, "train": {"match": match}})
            store.ensure([retrain])
            evaluation = Run("evaluate", {"task": "kws", "model": "kws-resnet", "seed": 0, "split": split,
                                          "method": "calibrated", "retrain": retrain.key})
            store.ensure([evaluation])
            lookup = targets_script.RunLookup.of(store)
            settings.append(targets_script.setting_of(store.get(evaluation.key), lookup))
            assert targets_script.cell_of(store.get(evaluation.key))[-1] == retrain.key
    assert settings == [("kws", "sample", ""), ("kws", "sample", " against the step-matched Retrain")]


# ---------------------------------------------------------------------------------------------
# verdict_rates.py: how often forget's verdict is right


def test_verdict_rates_draws_requests_of_every_kind_in_turn_and_the_same_each_time(fsdd_kws):
    draw = benchmark_module("verdict_rates").draw_requests
    requests = draw(fsdd_kws, per_kind=2, files=12, min_items=10, seed=3)
    assert [r["kind"] for r in requests] == ["speaker", "keyword", "files"] * 2  # a partial run covers each kind
    assert requests == draw(fsdd_kws, per_kind=2, files=12, min_items=10, seed=3)
    assert len({r["id"] for r in requests}) == 6
    training = {u.utt_id for u in fsdd_kws.utterances if u.split == "train"}
    for request in requests:
        if request["kind"] == "files":
            assert len(set(request["items"])) == 12 and set(request["items"]) <= training
        if request["kind"] == "keyword":
            assert request["items"][0] in fsdd_kws.label_names


@pytest.mark.parametrize("worker", ["2/2", "half", "1"])
def test_verdict_rates_refuses_a_bad_worker_share_by_name(tmp_path, worker):
    done = run_script("verdict_rates.py", "run", str(tmp_path / "no-checkpoint"), str(tmp_path / "out"),
                      "--worker", worker)
    assert done.returncode == 2 and "--worker" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_verdict_rates_measures_each_request_and_reuses_its_retrains(tmp_path, fsdd_root, cache_dir):
    """A tiny FSDD keyword model, one request of each kind: the Retrain of a keyword request never
    saw the keyword, and a second run with --reuse-retrains loads the same Retrain weights."""
    import json

    from cli_helpers import run_cli

    checkpoint = tmp_path / "original"
    status, _, stderr = run_cli([
        "train", "--task", "kws", "--corpus", f"fsdd:{fsdd_root}", "--out", str(checkpoint), "--cache-dir",
        str(cache_dir), "--model", "kws-resnet", "--model-option", "channels=8", "--model-option", "blocks=1",
        "--set", "epochs=6", "--set", "batch_size=64", "--set", "lr=0.01", "--no-progress"])  # fmt: skip
    assert status == 0, stderr
    common = ["--per-kind", "1", "--files", "10", "--cache-dir", str(cache_dir), "--budget-seconds", "2"]
    done = run_script("verdict_rates.py", "run", str(checkpoint), str(tmp_path / "first"), *common, timeout=900)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "first" / "requests-0.jsonl").read_text().splitlines()]
    assert [row["kind"] for row in rows] == ["speaker", "keyword", "files"] and rows[2]["n"] == 10
    report = run_script("verdict_rates.py", "summary", str(tmp_path / "first"), "--cache-dir", str(cache_dir),
                        timeout=600)
    assert report.returncode == 0, report.stderr
    table = {line.split("|")[1].strip(): line.split("|") for line in report.stdout.splitlines() if line.startswith("| ")}
    assert set(table) >= {"speaker", "keyword", "files"}
    assert float(table["keyword"][9]) > 0, report.stdout  # the Original recognises the keyword better than its Retrain
    again = run_script("verdict_rates.py", "run", str(checkpoint), str(tmp_path / "again"), *common,
                       "--reuse-retrains", str(tmp_path / "first"), timeout=900)
    assert again.returncode == 0, again.stderr
    for row in rows:
        name = f"{row['id']}-retrain.safetensors"
        assert (tmp_path / "again" / "models" / name).read_bytes() == (tmp_path / "first" / "models" / name).read_bytes()
