"""The results database: WAL mode, row life cycle, crash recovery, tuning provenance."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from speech_unlearning.experiments.plan import Run, TuneGroup
from speech_unlearning.experiments.store import DB_NAME, STATUSES, ResultStore


def make_run(stage: str = "unlearn", **config) -> Run:
    base = {"task": "kws", "corpus": "embedded", "model": "kws-resnet", "seed": 0,
            "split": {"scenario": "sample", "ratio": 0.05, "seed": 0, "role": "test"}, "method": "scrub"}
    return Run(stage, {"stage": stage, **base, **config})


@pytest.fixture
def store(tmp_path):
    with ResultStore.in_folder(tmp_path) as opened:
        yield opened


def test_database_uses_wal_mode_and_lives_in_the_run_folder(tmp_path, store):
    assert (tmp_path / DB_NAME).is_file()
    mode = store.connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode.lower() == "wal"


def test_run_key_is_the_sha256_of_the_canonical_config():
    first = make_run(method="scrub", seed=1)
    same_content_other_order = Run("unlearn", dict(reversed(list(first.config.items()))))
    assert first.key == same_content_other_order.key
    assert len(first.key) == 64 and all(c in "0123456789abcdef" for c in first.key)
    assert make_run(method="salun", seed=1).key != first.key


def test_row_life_cycle_pending_running_done(store):
    run = make_run()
    store.ensure([run])
    record = store.get(run.key)
    assert record.status == "pending" and record.attempts == 0
    assert (record.task, record.model, record.seed) == ("kws", "kws-resnet", 0)
    assert record.created_at and record.finished_at is None

    store.mark_running(run)
    assert store.get(run.key).status == "running"
    metrics = {"accuracy": {"df": np.float32(0.5)}, "vector": np.arange(3)}
    store.mark_done(run, metrics, {"checkpoint": "unlearn/abc/model"}, 1.25, {"worker_wall_seconds": 2.0})
    record = store.get(run.key)
    assert record.status == "done" and record.attempts == 1
    assert record.metrics == {"accuracy": {"df": 0.5}, "vector": [0, 1, 2]}
    assert record.artefacts == {"checkpoint": "unlearn/abc/model"}
    assert record.seconds == 1.25 and record.timings["worker_wall_seconds"] == 2.0
    assert record.finished_at is not None


def test_ensure_never_overwrites_an_existing_row(store):
    run = make_run()
    store.ensure([run])
    store.mark_running(run)
    store.mark_done(run, {"x": 1}, {}, 1.0)
    store.ensure([run])
    assert store.get(run.key).status == "done"
    assert len(store.records()) == 1


def test_failure_keeps_the_error_text(store):
    run = make_run()
    store.ensure([run])
    store.mark_running(run)
    store.mark_failed(run, "ValueError: lr must be positive\n\ntraceback...")
    record = store.get(run.key)
    assert record.status == "failed"
    assert record.error.startswith("ValueError: lr must be positive")
    assert store.status_counts() == {"unlearn": {"failed": 1}}


def test_running_rows_from_a_crash_become_pending(store):
    crashed, finished = make_run(seed=1), make_run(seed=2)
    store.ensure([crashed, finished])
    store.mark_running(crashed)
    store.mark_running(finished)
    store.mark_done(finished, {}, {}, 0.1)
    assert store.recover_interrupted() == [crashed.key]
    assert store.get(crashed.key).status == "pending"
    assert store.get(finished.key).status == "done"
    assert store.recover_interrupted() == []


def test_status_check_constraint_rejects_unknown_statuses(store):
    run = make_run()
    store.ensure([run])
    assert set(STATUSES) == {"pending", "running", "done", "failed"}
    with pytest.raises(sqlite3.IntegrityError):
        with store.connection:
            store.connection.execute("UPDATE runs SET status = 'finished' WHERE config_hash = ?", (run.key,))


def test_rows_survive_reopening(tmp_path):
    run = make_run()
    with ResultStore.in_folder(tmp_path) as first:
        first.ensure([run])
        first.mark_running(run)
        first.mark_done(run, {"avg_gap_pp": 3.5}, {"report": "evaluate/x/report.json"}, 2.0)
    with ResultStore.in_folder(tmp_path) as second:
        record = second.get(run.key)
    assert record.metrics == {"avg_gap_pp": 3.5}
    assert record.config == run.config


def test_existing_opens_a_finished_folder_and_refuses_one_without_a_database(tmp_path):
    run = make_run()
    with ResultStore.in_folder(tmp_path / "grid") as written:
        written.ensure([run])
    with ResultStore.existing(tmp_path / "grid") as reopened:
        assert reopened.get(run.key).config == run.config
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=f"no results database in {empty}"):
        ResultStore.existing(empty)
    assert list(empty.iterdir()) == []  # nothing created


def test_tuning_choice_is_stored_with_its_provenance(store):
    group = TuneGroup("g" * 64, "kws", "embedded", "kws-resnet", "sample", "scrub", ("a", "b"),
                      ({"lr_scale": 1.0, "epoch_scale": 1.0}, {"lr_scale": 3.0, "epoch_scale": 1.0}))
    assert store.tuning(group.key) is None
    choice = {"overrides": {"lr": 1e-3, "epochs": 5}, "avg_gap": 2.0}
    provenance = {"criterion": "Avg. Gap on validation", "candidates": [{"run": "a", "avg_gap": 2.0}]}
    store.save_tuning(group, choice, provenance)
    assert store.tuning(group.key) == {"choice": choice, "provenance": provenance}
    rows = store.tuning_rows()
    assert len(rows) == 1 and rows[0]["method"] == "scrub" and rows[0]["scenario"] == "sample"


def test_meta_values_round_trip(store):
    store.set_meta("config", {"seeds": [0, 1]})
    assert store.get_meta("config") == {"seeds": [0, 1]}
    assert store.get_meta("missing", "default") == "default"
    assert store.get_meta("schema_version") == 1
