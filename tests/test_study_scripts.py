"""The benchmark study scripts (benchmarks/*.py) on bad input: a clear one-line exit, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = PROJECT_ROOT / "benchmarks"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True,
                          timeout=120, cwd=PROJECT_ROOT)


@pytest.mark.parametrize("script", ["validation_study.py", "retrain_noise.py", "unlearning_targets.py"])
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
