"""The Ray executor on a local Ray instance started (and shut down) by the test."""

from __future__ import annotations

import json
import os
import sys

import pytest

from speech_unlearning.experiments.executors import Job, RayExecutor, StageResult
from speech_unlearning.experiments.plan import STAGES, build_plan
from speech_unlearning.experiments.presets import BenchConfig
from speech_unlearning.experiments.runner import run_grid
from speech_unlearning.experiments.store import ResultStore
from speech_unlearning.io import atomic_directory

ray = pytest.importorskip("ray", reason="the ray executor needs the ray package")


def ray_stage(job: Job) -> StageResult:
    """Writes an artefact; fails for method "beta"; reports the worker's pid and Ray's CPU grant."""
    if job.stage == "unlearn" and job.config.get("method") == "beta":
        raise ValueError("beta cannot unlearn")
    with atomic_directory(job.folder) as folder:
        (folder / "out.json").write_text(json.dumps({"key": job.key}))
    metrics = {"pid": os.getpid(), "cpus": ray.get_runtime_context().get_assigned_resources().get("CPU")}
    return StageResult(metrics=metrics, artefacts={"out": f"{job.stage}/{job.key[:16]}/out.json"}, seconds=0.2)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    # The workers cannot import this test module by name: ship its functions by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def test_one_ray_task_per_run_results_recorded_by_the_driver(tmp_path, local_ray):
    config = BenchConfig(name="ray", tasks=("kws",), methods=("alpha", "beta"), scenarios=("sample",),
                         ratios=(0.05,), seeds=(0,))
    plan = build_plan(config, check_names=False)
    executor = RayExecutor(cpus_per_run=1.0)
    assert executor.capacity == 2  # two CPUs, one per run
    summary = run_grid(plan, tmp_path, executor, stages={stage: ray_stage for stage in STAGES}, progress=False)
    assert ray.is_initialized()  # an instance the executor did not start is left running

    beta = {run.key for run in plan.runs if run.config.get("method") == "beta"}
    assert set(summary.failed) == beta
    with ResultStore.in_folder(tmp_path) as store:
        done = store.records(status="done")
        failed = {record.key: record.error for record in store.records(status="failed")}
    assert {record.key for record in done} == {run.key for run in plan.runs} - beta
    assert any(error.startswith("ValueError: beta cannot unlearn") for error in failed.values())
    assert all(record.metrics["pid"] != os.getpid() for record in done)  # computed in Ray workers
    assert {record.metrics["cpus"] for record in done} == {1.0}
    assert all((tmp_path / record.artefacts["out"]).is_file() for record in done)

    rerun = run_grid(plan, tmp_path, RayExecutor(), stages={stage: ray_stage for stage in STAGES}, progress=False)
    assert rerun.executed == [] and rerun.skipped == len(plan.runs)


def test_asking_for_more_gpus_than_the_cluster_has_is_a_clear_error(local_ray):
    with pytest.raises(ValueError, match="--gpus-per-run 1.0: the Ray cluster has 0 GPU"):
        RayExecutor(gpus_per_run=1.0)
