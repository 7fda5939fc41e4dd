"""The grid runner: resume, crash recovery, failure recording, budgets, tuning, process pool.

Orchestration tests inject fake stage functions (they write a small artefact and return
canned metrics) so that they test the driver, not training; the last test runs the real
stages end to end on a tiny grid of the embedded corpus.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from speech_unlearning.config import ConfigError
from speech_unlearning.experiments.executors import Job, PoolExecutor, StageResult
from speech_unlearning.experiments.plan import STAGES, build_plan
from speech_unlearning.experiments.presets import BenchConfig
from speech_unlearning.experiments.report import write_report_files
from speech_unlearning.experiments.runner import run_grid
from speech_unlearning.experiments.store import ResultStore
from speech_unlearning.io import atomic_directory

RETRAIN_SECONDS = 3.0


def fake_stage(job: Job) -> StageResult:
    """Writes RUN_DIR/<stage>/<key>/out.json; fails or interrupts where `job.extra` says so."""
    method = job.config.get("method")
    if job.stage in job.extra.get("fail_stages", ()) and method in job.extra.get("fail_methods", ()):
        raise RuntimeError(f"injected failure in {method}")
    if job.key in job.extra.get("interrupt_keys", ()):
        raise KeyboardInterrupt  # what a Ctrl-C or a killed driver looks like to the grid
    with atomic_directory(job.folder) as folder:
        (folder / "out.json").write_text(json.dumps({"key": job.key, "inputs": sorted(job.inputs)}))
    metrics = {"pid": os.getpid(), "budget": job.extra.get("budget_seconds"), "steps": job.extra.get("budget_steps"),
               "overrides": job.extra.get("overrides"), "inputs": sorted(job.inputs)}
    if job.stage == "tune":
        point = job.config["point"]
        # Best point: lr_scale 1.0 with epoch_scale 0.5 (smallest gap).
        metrics["avg_gap"] = abs(point["lr_scale"] - 1.0) * 10 + point["epoch_scale"]
        metrics["overrides"] = {"lr": 1e-3 * point["lr_scale"], "epochs": int(4 * point["epoch_scale"])}
        metrics["no_op"] = point["lr_scale"] in job.extra.get("no_op_lr_scales", ())
    seconds = RETRAIN_SECONDS if job.stage == "retrain" else 0.5
    return StageResult(metrics=metrics, artefacts={"out": f"{job.stage}/{job.key[:16]}/out.json"}, seconds=seconds)


def missing_artefact_stage(job: Job) -> StageResult:
    """Claims an artefact it never wrote."""
    return StageResult(metrics={}, artefacts={"out": f"{job.stage}/{job.key[:16]}/never-written.json"}, seconds=0.1)


FAKE_STAGES = {stage: fake_stage for stage in STAGES}


def small_config(**changes) -> BenchConfig:
    values = dict(name="t", tasks=("kws",), methods=("alpha", "beta"), scenarios=("sample", "class"),
                  ratios=(0.05,), seeds=(0,))
    values.update(changes)
    return BenchConfig(**values)


def small_plan(**changes):
    return build_plan(small_config(**changes), check_names=False)


def run(plan, run_dir, **kwargs):
    return run_grid(plan, run_dir, stages=kwargs.pop("stages", FAKE_STAGES), progress=False, **kwargs)


def statuses(run_dir: Path) -> dict[str, str]:
    with ResultStore.in_folder(run_dir) as store:
        return store.statuses()


def test_every_run_executes_once_after_its_inputs(tmp_path):
    plan = small_plan()
    assert plan.counts() == {"corpus": 1, "original": 1, "retrain": 2, "tune": 0, "unlearn": 4, "evaluate": 8,
                             "ensemble": 0}
    summary = run(plan, tmp_path)
    assert sorted(summary.executed) == sorted(run.key for run in plan.runs)
    assert summary.failed == [] and summary.skipped == 0
    assert set(statuses(tmp_path).values()) == {"done"}
    position = {key: index for index, key in enumerate(summary.executed)}
    with ResultStore.in_folder(tmp_path) as store:
        for run_ in plan.runs:
            assert all(position[dep] < position[run_.key] for dep in run_.deps)
            record = store.get(run_.key)
            assert record.metrics["inputs"] == sorted(run_.deps)  # every input handed to the worker
            assert (tmp_path / record.artefacts["out"]).is_file()


def test_rerun_skips_finished_runs_and_redoes_exactly_the_missing_ones(tmp_path):
    plan = small_plan()
    run(plan, tmp_path)
    assert run(plan, tmp_path).executed == []

    unlearn_a, unlearn_b, evaluate_a = plan.stage_runs("unlearn")[0], plan.stage_runs("unlearn")[1], plan.stage_runs("evaluate")[3]
    with ResultStore.in_folder(tmp_path) as store:
        store.connection.execute("DELETE FROM runs WHERE config_hash = ?", (unlearn_a.key,))  # row lost
        store.connection.execute("UPDATE runs SET status = 'pending' WHERE config_hash = ?", (evaluate_a.key,))
        store.connection.commit()
        artefact = tmp_path / store.get(unlearn_b.key).artefacts["out"]
    artefact.unlink()  # a "done" row whose artefacts went missing is not finished
    summary = run(plan, tmp_path)
    assert sorted(summary.executed) == sorted([unlearn_a.key, unlearn_b.key, evaluate_a.key])
    assert summary.skipped == len(plan.runs) - 3
    assert set(statuses(tmp_path).values()) == {"done"}


def test_interrupted_grid_resumes_and_reruns_the_run_left_running(tmp_path):
    plan = small_plan()
    victim = plan.stage_runs("unlearn")[2]
    with pytest.raises(KeyboardInterrupt):
        run(plan, tmp_path, extra={"interrupt_keys": [victim.key]})
    before = statuses(tmp_path)
    assert before[victim.key] == "running"  # what a crash leaves behind
    finished_before = {key for key, status in before.items() if status == "done"}
    assert finished_before and len(finished_before) < len(plan.runs)

    summary = run(plan, tmp_path)
    assert summary.recovered == [victim.key]
    assert set(summary.executed) == {run_.key for run_ in plan.runs} - finished_before
    assert set(statuses(tmp_path).values()) == {"done"}


def test_a_failed_run_is_recorded_and_the_grid_goes_on(tmp_path):
    plan = small_plan()
    summary = run(plan, tmp_path, extra={"fail_stages": ["unlearn"], "fail_methods": ["beta"]})
    beta_unlearn = {r.key for r in plan.stage_runs("unlearn") if r.config["method"] == "beta"}
    beta_evaluate = {r.key for r in plan.stage_runs("evaluate") if r.config["method"] == "beta"}
    assert set(summary.failed) == beta_unlearn | beta_evaluate
    with ResultStore.in_folder(tmp_path) as store:
        for key in beta_unlearn:
            error = store.get(key).error
            assert error.startswith("RuntimeError: injected failure in beta") and "Traceback" in error
        for key in beta_evaluate:
            assert store.get(key).error.startswith("blocked: dependency unlearn")
        done = {r.key for r in store.records(status="done")}
    assert done == {r.key for r in plan.runs} - beta_unlearn - beta_evaluate  # alpha, references: all finished

    assert run(plan, tmp_path).executed == []  # failures are not retried by default
    retried = run(plan, tmp_path, retry_failed=True)
    assert set(retried.executed) == beta_unlearn | beta_evaluate and retried.failed == []
    assert set(statuses(tmp_path).values()) == {"done"}


def test_a_run_whose_artefacts_are_missing_is_never_done(tmp_path):
    plan = small_plan(tasks=("kws",))
    stages = {**FAKE_STAGES, "original": missing_artefact_stage}
    summary = run(plan, tmp_path, stages=stages)
    original = plan.stage_runs("original")[0]
    with ResultStore.in_folder(tmp_path) as store:
        record = store.get(original.key)
    assert record.status == "failed" and "artefacts missing" in record.error
    assert original.key in summary.failed


def test_unlearning_budget_is_the_retrain_wall_time_times_factor_capped(tmp_path):
    plan = small_plan(budget_factor=2.0, unlearn_cap_seconds=5.0, methods=("alpha",))
    run(plan, tmp_path)
    with ResultStore.in_folder(tmp_path) as store:
        budgets = {store.get(r.key).metrics["budget"] for r in plan.stage_runs("unlearn")}
    assert budgets == {min(RETRAIN_SECONDS * 2.0, 5.0)}

    uncapped = small_plan(budget_factor=0.5, methods=("alpha",))
    run(uncapped, tmp_path / "uncapped")
    with ResultStore.in_folder(tmp_path / "uncapped") as store:
        assert {store.get(r.key).metrics["budget"] for r in uncapped.stage_runs("unlearn")} == {RETRAIN_SECONDS * 0.5}


def test_a_step_cap_replaces_the_time_budget_and_leaves_other_grids_keys_alone(tmp_path):
    plan = small_plan(budget_factor=2.0, unlearn_cap_seconds=5.0, unlearn_cap_steps=7, methods=("alpha",))
    run(plan, tmp_path)
    with ResultStore.in_folder(tmp_path) as store:
        budgets = {(store.get(r.key).metrics["budget"], store.get(r.key).metrics["steps"])
                   for r in plan.stage_runs("unlearn")}
    assert budgets == {(None, 7)}  # no time budget: the step cap decides where a capped method stops
    # Without the option, the unlearning runs keep the keys they had before it existed.
    timed = small_plan(budget_factor=2.0, unlearn_cap_seconds=5.0, methods=("alpha",))
    assert {r.config["budget"]["cap_seconds"] for r in timed.stage_runs("unlearn")} == {5.0}
    assert all("cap_steps" not in r.config["budget"] for r in timed.stage_runs("unlearn"))
    with pytest.raises(ConfigError, match="unlearn_cap_steps"):
        small_config(unlearn_cap_steps=0)


def test_tuning_chooses_on_validation_splits_and_records_provenance(tmp_path):
    plan = small_plan(tune=True, methods=("alpha",), scenarios=("sample",), tune_lr_scales=(0.3, 1.0, 3.0),
                      tune_epoch_scales=(0.5, 1.0))
    tune_runs = plan.stage_runs("tune")
    assert len(tune_runs) == 6 and all(r.config["split"]["role"] == "validation" for r in tune_runs)
    run(plan, tmp_path)
    with ResultStore.in_folder(tmp_path) as store:
        (row,) = store.tuning_rows()
        unlearn_overrides = [store.get(r.key).metrics["overrides"] for r in plan.stage_runs("unlearn")]
    assert row["choice"]["point"] == {"lr_scale": 1.0, "epoch_scale": 0.5}
    assert row["choice"]["overrides"] == {"lr": 1e-3, "epochs": 2}
    assert len(row["provenance"]["candidates"]) == 6
    assert row["provenance"]["validation_split"]["role"] == "validation"
    assert unlearn_overrides == [{"lr": 1e-3, "epochs": 2}]  # the test-split run used the choice
    (saved,) = (tmp_path / "tuning").glob("*.json")
    assert json.loads(saved.read_text())["choice"]["point"] == {"lr_scale": 1.0, "epoch_scale": 0.5}
    # The report says what was chosen and how the defaults (x1, x1: gap 1.0) scored on the same split.
    paths = write_report_files(tmp_path, plots=False)
    report = paths["markdown"].read_text()
    tuning_rows = [line for line in report.splitlines() if line.startswith("| kws |")]
    assert "## Tuning" in report
    assert tuning_rows == ["| kws | kws-resnet | sample | alpha | lr 0.001, 2 epochs | x1, x0.5 | 0.50 | 1.00 | 0 of 6 |"]
    assert "<td>lr 0.001, 2 epochs</td>" in paths["html"].read_text()


def no_op_stages(lr_scales: tuple[float, ...]) -> dict:
    """FAKE_STAGES whose tuning runs at these lr scales return the Original unchanged."""
    def stage(job: Job) -> StageResult:
        return fake_stage(dataclasses.replace(job, extra={**job.extra, "no_op_lr_scales": lr_scales}))
    return {name: stage for name in STAGES}


def test_tuning_never_chooses_a_point_that_left_the_model_unchanged_unless_every_point_did(tmp_path):
    """The best-scoring points (lr x1) returned the Original unchanged: the best point that changed
    the model is chosen; when every point is a no-op the choice says so."""
    plan = small_plan(tune=True, methods=("alpha",), scenarios=("sample",), tune_lr_scales=(0.3, 1.0, 3.0),
                      tune_epoch_scales=(0.5, 1.0))
    chosen = {}
    for name, no_op_scales in (("some", (1.0,)), ("every", (0.3, 1.0, 3.0))):
        run(plan, tmp_path / name, stages=no_op_stages(no_op_scales))
        with ResultStore.in_folder(tmp_path / name) as store:
            (chosen[name],) = store.tuning_rows()
    assert chosen["some"]["choice"]["point"] == {"lr_scale": 0.3, "epoch_scale": 0.5}
    assert chosen["some"]["choice"]["no_op"] is False
    assert sum(c["no_op"] for c in chosen["some"]["provenance"]["candidates"]) == 2
    assert chosen["every"]["choice"]["point"] == {"lr_scale": 1.0, "epoch_scale": 0.5}
    assert chosen["every"]["choice"]["no_op"] is True


def test_process_pool_runs_the_grid_in_worker_processes(tmp_path):
    plan = small_plan(methods=("alpha",), scenarios=("sample",))
    summary = run(plan, tmp_path, executor=PoolExecutor(2))
    assert summary.failed == [] and len(summary.executed) == len(plan.runs)
    with ResultStore.in_folder(tmp_path) as store:
        pids = {store.get(r.key).metrics["pid"] for r in plan.runs}
    assert os.getpid() not in pids  # workers computed, the driver only recorded


@pytest.mark.slow
def test_real_stages_end_to_end_on_a_tiny_embedded_grid(tmp_path, cache_dir, embedded_sid):
    """Every real stage on the embedded SID corpus: a few seconds of training, one method."""
    from speech_unlearning.experiments.report import write_report_files

    config = small_config(tasks=("sid",), methods=("gradascent",), scenarios=("sample",), epochs=1,
                          max_train_seconds=3.0, unlearn_cap_seconds=1.0, relearn_attack=False,
                          representation_probe=False, tune=True, tune_lr_scales=(1.0,), tune_epoch_scales=(1.0,))
    plan = build_plan(config)
    summary = run_grid(plan, tmp_path, cache_dir=cache_dir, extra={"device": "cpu"}, progress=False)
    with ResultStore.in_folder(tmp_path) as store:
        errors = {r.label: r.error.splitlines()[0] for r in store.records(status="failed")}
        assert summary.failed == [], errors
        evaluations = {r.config["method"]: r for r in store.records(stage="evaluate")}
        retrain = store.get(plan.stage_runs("retrain")[0].key)
        original = store.get(plan.stage_runs("original")[0].key)
        (unlearn,) = [store.get(r.key) for r in plan.stage_runs("unlearn")]
        (tune,) = [store.get(r.key) for r in plan.stage_runs("tune")]
    # The tuning run says whether it changed the model, so a method choice can leave no-ops out.
    assert tune.metrics["no_op"] is False and tune.metrics["test_stand_in"] == "validation"
    # The Retrain trained with a seed of its own (initialisation and order), not the Original's.
    assert retrain.metrics["train_seed"] != original.metrics["train_seed"]
    assert set(evaluations) == {"original", "retrain", "gradascent"}
    assert evaluations["retrain"].metrics["avg_gap_pp"] == 0.0
    assert evaluations["retrain"].metrics["metrics"]["time"]["ratio"] == 1.0
    assert "time" not in evaluations["original"].metrics["metrics"]  # no unlearning happened
    for method in ("original", "gradascent"):
        metrics = evaluations[method].metrics
        assert 0.0 <= metrics["metrics"]["accuracy"]["df"] <= 1.0
        assert metrics["avg_gap_pp"] is not None and metrics["avg_gap_pp"] >= 0.0
        assert metrics["split"]["n_forget"] == round(0.05 * len(embedded_sid.indices("train")))
    # The unlearning budget came from the Retrain's wall time, capped at 1 s.
    assert unlearn.metrics["budget_seconds"] == pytest.approx(min(retrain.seconds, 1.0))
    assert (tmp_path / unlearn.artefacts["checkpoint"] / "model.safetensors").is_file()
    assert evaluations["gradascent"].metrics["metrics"]["time"]["unlearn_seconds"] == pytest.approx(unlearn.seconds)
    # The run records how much of its schedule it took: cut short exactly when the budget stopped it.
    steps, planned = unlearn.metrics["steps"], unlearn.metrics["planned_steps"]
    assert 0 < steps <= planned and (steps < planned) == unlearn.metrics["budget_exhausted"]
    markdown = write_report_files(tmp_path, plots=False)["markdown"].read_text()
    assert "| gradascent |" in markdown and "| Retrain |" in markdown
    (line,) = [line for line in markdown.splitlines() if line.startswith("| gradascent |")]
    assert f"of {planned}" in line and ("capped at" in line) == unlearn.metrics["budget_exhausted"]


def test_a_step_matched_retrain_stage_trains_for_the_originals_step_count(tmp_path, cache_dir, embedded_sid):
    """The real corpus, original and retrain stages (the rest faked): with half the training set
    forgotten, the Retrain runs about twice the Original's epochs, so both take as many optimiser steps."""
    from speech_unlearning.experiments.stages import STAGE_FUNCTIONS
    from speech_unlearning.models.checkpoint import load_checkpoint
    from speech_unlearning.training.recipes import default_train_config
    from speech_unlearning.training.trainer import step_matched_epochs

    config = small_config(tasks=("sid",), scenarios=("sample",), ratios=(0.5,), epochs=2, retrain_match="steps",
                          model_options={"sid-xvector": {"channels": 16, "embedding_dim": 16, "stats_channels": 32}})
    plan = build_plan(config, check_names=False)
    real = ("corpus", "original", "retrain")
    stages = {**FAKE_STAGES, **{stage: STAGE_FUNCTIONS[stage] for stage in real}}
    assert run(plan, tmp_path, stages=stages, cache_dir=cache_dir, extra={"device": "cpu"}).failed == []
    with ResultStore.in_folder(tmp_path) as store:
        retrain = store.get(plan.stage_runs("retrain")[0].key)
    train_rows = len(embedded_sid.indices("train"))
    retained = train_rows - retrain.metrics["n_forget"]
    batch_size = default_train_config("sid", "sid-xvector").batch_size
    expected = step_matched_epochs(2, train_rows, retained, batch_size)
    assert expected >= 4 and retrain.metrics["epochs_run"] == expected
    # The checkpoint records the recipe it ran, so studies that retrain its cell repeat it.
    _, metadata = load_checkpoint(tmp_path / retrain.artefacts["checkpoint"])
    assert metadata["train_config"]["epochs"] == expected
    # ... and the seed it trained with: not the Original's (one Retrain per split, K = 1).
    (original,) = plan.stage_runs("original")
    assert retrain.metrics["train_seed"] == metadata["train_config"]["seed"] != original.config["seed"]
