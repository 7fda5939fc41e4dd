"""Reliability end to end: killed processes, interrupted writes, bad input and configuration, determinism.

The tests of each layer prove most guarantees in-process (docs/RELIABILITY.md maps every
guarantee to its tests). This file adds what only real processes can show:

- a `speech-unlearn bench` subprocess SIGKILLed at several points of a tiny grid resumes to the
  results of an uninterrupted run: no finished run lost or run again, nothing half-written
  taken for finished, no temporaries left;
- checkpoint saves, file writes and corpus builds SIGKILLed mid-write keep the previous
  version, and the next start removes the leftovers;
- corpus -> train -> unlearn -> evaluate in two fresh interpreters gives bit-identical weights
  and identical reports;
- bad audio, unsafe cache files and bad configuration fail with an error naming the culprit,
  before any compute; property tests for the path checks and the files split builder.

Every subprocess runs with one intra-op thread (OMP_NUM_THREADS=1): the grid's small models
train several times faster than with two threads fighting for two shared cores.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st

from speech_unlearning.cli.main import main
from speech_unlearning.data.audio import AudioError, read_wav
from speech_unlearning.data.corpus import Corpus, CorpusError, Utterance
from speech_unlearning.data.embedded import read_manifest, verify_embedded_corpus
from speech_unlearning.data.features import cache_entry, feature_spec_for, load_features
from speech_unlearning.data.loaders import load_corpus
from speech_unlearning.data.splits import corpus_path, files_split
from speech_unlearning.experiments.store import DB_NAME, ResultStore, RunRecord
from speech_unlearning.io import TMP_PREFIX
from speech_unlearning.models.checkpoint import load_checkpoint

CLI = [sys.executable, "-m", "speech_unlearning.cli.main"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
PROCESS_TIMEOUT = 180  # seconds; generous for a busy two-core machine, never reached when all is well

# A tiny embedded corpus (about 1 s to build): 144 KWS clips, 72 SID clips from 6 speakers.
TINY_CORPUS = {
    "kws_speakers": "12", "unknown_words": "bed,bird,cat", "unknown_per_speaker": "2",
    "background_noise_seconds": "10", "sid_speakers": "6", "sid_sessions": "4",
    "sid_utterances_per_session": "3", "shards": "2",
}  # fmt: skip
TINY_CORPUS_ARGS = [arg for key, value in TINY_CORPUS.items() for arg in ("--set", f"{key}={value}")]

# A 9-run grid (corpus, original, retrain, 2 unlearn, 4 evaluate) of about 10 s on one core.
# No wall-time caps anywhere: a capped run stops at a time-dependent point and is not repeatable.
GRID_PRESET = """\
base: demo
name: tiny
tasks: [sid]
methods: [gradascent, finetune]
scenarios: [sample]
ratios: [0.1]
epochs: 2
max_train_seconds: null
unlearn_cap_seconds: null
budget_factor: 1000.0
relearn_attack: false
representation_probe: false
workers: 1
device: cpu
method_overrides: {finetune: {epochs: 3}}
model_options: {sid-xvector: {embedding_dim: 4096}}
"""
# A wide embedding layer (2.5 M parameters, one matrix-vector product per utterance) makes every
# checkpoint ~10 MB, so an artefact write lasts long enough for the poller to land a kill in it
# even on a busy machine; the convolutions, where the training time goes, stay at demo width.


def run_cli(*args: str, timeout: float = PROCESS_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=ENV, capture_output=True, text=True, timeout=timeout)


def temporaries(folder: Path) -> list[Path]:
    """Every `.tmp-*` file or folder anywhere under `folder`."""
    return sorted(path for path in folder.rglob(f"{TMP_PREFIX}*"))


def named(path: Path | str) -> str:
    return re.escape(str(path))


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory) -> Path:
    """A pristine cache holding only the tiny embedded corpus (tests copy it, never change it)."""
    cache = tmp_path_factory.mktemp("tiny") / "cache"
    result = run_cli("corpus", "build", "--cache-dir", str(cache), "--no-progress", *TINY_CORPUS_ARGS)
    assert result.returncode == 0, result.stderr
    return cache


def copy_cache(tiny_cache: Path, destination: Path) -> Path:
    shutil.copytree(tiny_cache, destination, symlinks=True)
    return destination


@pytest.fixture(scope="module")
def grid_preset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("preset") / "tiny.yaml"
    path.write_text(GRID_PRESET)
    return path


def bench_args(preset: Path, run_dir: Path, cache: Path) -> list[str]:
    return ["bench", "--preset", str(preset), "--run-dir", str(run_dir), "--cache-dir", str(cache), "--no-report"]


@pytest.fixture(scope="module")
def reference_run(tiny_cache, grid_preset, tmp_path_factory) -> Path:
    """The run folder of the grid run once, uninterrupted."""
    work = tmp_path_factory.mktemp("reference")
    cache = copy_cache(tiny_cache, work / "cache")
    result = run_cli(*bench_args(grid_preset, work / "run", cache))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return work / "run"


# ----------------------------------------------------------------------------------------------
# Crash-safe grids: SIGKILL a real bench at several points, resume, compare with the reference.


def records(run_dir: Path) -> dict[str, RunRecord]:
    with ResultStore.in_folder(run_dir) as store:
        return {record.key: record for record in store.records()}


Rows = dict[str, tuple[str, str]]  # run key -> (stage, status)


def live_rows(run_dir: Path) -> Rows:
    """key -> (stage, status), read without writing while a bench may be running; {} if unreadable."""
    path = run_dir / DB_NAME
    if not path.is_file():
        return {}
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
        try:
            rows = connection.execute("SELECT config_hash, stage, status FROM runs").fetchall()
        finally:
            connection.close()
    except sqlite3.DatabaseError:  # created but not initialised yet, or briefly locked
        return {}
    return {key: (stage, status) for key, stage, status in rows}


def _count(rows: Rows, stage: str | None = None, status: str | None = None) -> int:
    """Rows of `stage` (any if None) with `status` (any if None)."""
    return sum(1 for row_stage, row_status in rows.values()
               if stage in (None, row_stage) and status in (None, row_status))


def rows_show(test: Callable[[Rows], bool]) -> Callable[[Path, float], bool]:
    """A kill moment read from the results database."""
    return lambda run_dir, started: test(live_rows(run_dir))


def half_written(stage: str) -> Callable[[Path, float], bool]:
    """True while a run of `stage` writes its artefact folder: a `.tmp-*` created since `started`
    (older ones are leftovers of an earlier kill, which the bench removes when it starts)."""

    def writing(run_dir: Path, started: float) -> bool:
        try:
            entries = list(os.scandir(run_dir / stage))
        except FileNotFoundError:
            return False
        for entry in entries:
            try:
                if entry.name.startswith(TMP_PREFIX) and entry.stat().st_ctime >= started:
                    return True
            except FileNotFoundError:  # moved into place meanwhile
                continue
        return False

    return writing


# Ordered moments at which the bench is killed; each must come before the grid's end.
KILL_POINTS: list[tuple[str, Callable[[Path, float], bool]]] = [
    ("the first run (corpus) started", rows_show(lambda rows: _count(rows, status="running") > 0)),
    ("Original's checkpoint half-written", half_written("original")),
    ("Retrain training", rows_show(lambda rows: _count(rows, "retrain", "running") > 0)),
    ("an unlearning run in progress", rows_show(lambda rows: _count(rows, "unlearn", "running") > 0)),
    ("an unlearned checkpoint half-written", half_written("unlearn")),
    ("evaluations under way", rows_show(lambda rows: _count(rows, "evaluate", "done") >= 1
                                        and _count(rows, status="running") > 0)),
]


def start_bench(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([*CLI, *args], env=ENV, stdout=output, stderr=output, start_new_session=True)


def sigkill(process: subprocess.Popen) -> bool:
    """SIGKILL the bench and every process it started; False if it had already exited."""
    alive = process.poll() is None
    if alive:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    return alive


def kill_when(args: list[str], run_dir: Path, log: Path, moment: Callable[[Path, float], bool]) -> bool:
    """Start a bench, SIGKILL it as soon as its database shows `moment` (which must come)."""
    started = time.time()
    process = start_bench(args, log)
    deadline = time.monotonic() + PROCESS_TIMEOUT
    try:
        while not moment(run_dir, started):
            if process.poll() is not None:
                tail = log.read_text()[-3000:]
                pytest.fail(f"the bench ended (exit {process.returncode}) before the kill point:\n{tail}")
            if time.monotonic() > deadline:
                pytest.fail("kill point never reached")
            time.sleep(0.001)  # a checkpoint is half-written for a few milliseconds only
    finally:
        killed = sigkill(process)
    return killed


def kill_after(args: list[str], log: Path, seconds: float) -> bool:
    """Start a bench and SIGKILL it `seconds` later, wherever it is (False if it finished first)."""
    process = start_bench(args, log)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        pass
    return sigkill(process)


def check_done_artefacts(run_dir: Path, record: RunRecord) -> None:
    """A "done" row's artefacts are complete: checkpoints pass their sha256 check, JSON parses."""
    for relative in record.artefacts.values():
        path = run_dir / relative
        assert path.exists(), f"{record.label}: done but {relative} is missing"
        if (path / "model.safetensors").exists():
            load_checkpoint(path)  # refuses a weights file that does not match its recorded sha256
        elif path.suffix == ".json":
            json.loads(path.read_text())


def without_timings(value):
    """Metrics minus wall-clock measurements (durations, budgets derived from them, time ratios)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k != "time" and "seconds" not in k}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


class KilledGrid:
    """What the kills of one run folder left: checked after every kill, compared at the end."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.kills = 0
        self.half_written = 0  # kills that left a `.tmp-*` artefact behind
        self.interrupted: Counter[str] = Counter()  # run key -> kills that caught it "running"
        self.finished: dict[str, tuple] = {}  # run key -> (finished_at, attempts, metrics) when first seen done

    def after_kill(self) -> None:
        """No finished run was run again; every "done" row has complete artefacts."""
        self.kills += 1
        self.half_written += bool(temporaries(self.run_dir))
        state = records(self.run_dir) if (self.run_dir / DB_NAME).is_file() else {}
        self.interrupted.update(key for key, r in state.items() if r.status == "running")
        for key, record in state.items():
            if record.status == "done":
                check_done_artefacts(self.run_dir, record)
                seen = (record.finished_at, record.attempts, record.metrics)
                assert self.finished.setdefault(key, seen) == seen, f"{record.label}: a finished run was run again"

    def check_against(self, reference_run: Path, cache: Path) -> None:
        """Same finished runs and metrics as the reference, each run finished exactly once, no leftovers."""
        final, reference = records(self.run_dir), records(reference_run)
        assert set(final) == set(reference) and {r.status for r in final.values()} == {"done"}
        for key, record in final.items():
            assert without_timings(record.metrics) == without_timings(reference[key].metrics), record.label
            # One attempt, plus one per kill that interrupted it; rows finished before a kill untouched.
            assert record.attempts == 1 + self.interrupted[key], record.label
            if key in self.finished:
                assert (record.finished_at, record.attempts, record.metrics) == self.finished[key], record.label
            check_done_artefacts(self.run_dir, record)
        assert temporaries(self.run_dir) == [] and temporaries(cache) == []
        # Shown with `pytest -s`: the figures quoted in docs/RELIABILITY.md.
        print(f"\n{self.kills} SIGKILLs; {sum(self.interrupted.values())} caught a run mid-way "
              f"({', '.join(sorted({final[k].stage for k in self.interrupted}))}); "
              f"{self.half_written} left a half-written artefact; {len(self.finished)} of {len(final)} runs were "
              "done at some kill; runs lost: 0, run twice: 0")


def resume(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


def test_a_bench_sigkilled_at_chosen_moments_resumes_to_the_uninterrupted_results(
    reference_run, tiny_cache, grid_preset, tmp_path
):
    cache = copy_cache(tiny_cache, tmp_path / "cache")
    args = bench_args(grid_preset, tmp_path / "run", cache)
    grid = KilledGrid(tmp_path / "run")
    for _, moment in KILL_POINTS:
        assert kill_when(args, grid.run_dir, tmp_path / "bench.log", moment)
        grid.after_kill()
        assert len(grid.finished) < len(records(grid.run_dir)), "the kill came after the grid finished"
    assert sum(grid.interrupted.values()) >= len(KILL_POINTS) - 1  # the kills did land inside runs
    assert grid.half_written >= 1  # and at least one inside an artefact write
    resume(args)
    grid.check_against(reference_run, cache)


# Seconds after each start: the first kills land while the interpreter starts or the plan is
# printed, the later ones inside runs or between them, whatever the machine's speed.
STAGGERED_KILLS = (1.5, 3.0, 4.5, 6.0, 7.5)


def test_a_bench_sigkilled_at_staggered_times_resumes_to_the_uninterrupted_results(
    reference_run, tiny_cache, grid_preset, tmp_path
):
    cache = copy_cache(tiny_cache, tmp_path / "cache")
    args = bench_args(grid_preset, tmp_path / "run", cache)
    grid = KilledGrid(tmp_path / "run")
    for seconds in STAGGERED_KILLS:
        if not kill_after(args, tmp_path / "bench.log", seconds):
            break  # the grid finished before this kill
        grid.after_kill()
    assert grid.kills >= 3
    resume(args)
    grid.check_against(reference_run, cache)


# ----------------------------------------------------------------------------------------------
# Atomic artefacts: SIGKILL in the middle of a real write.

CHECKPOINT_WRITER = """
import sys, torch
from speech_unlearning.models.checkpoint import save_checkpoint
from speech_unlearning.models.registry import create_model

def big_model(seed):  # about 64 MiB of weights, so that the save takes a visible moment
    torch.manual_seed(seed)
    return create_model("sid-xvector", 10, channels=1024, stats_channels=3000, embedding_dim=1024)

save_checkpoint(sys.argv[1], big_model(0), {"version_written": 1})
print("first save complete", flush=True)
save_checkpoint(sys.argv[1], big_model(1), {"version_written": 2})
print("second save complete", flush=True)
"""

FILE_WRITER = """
import sys
from speech_unlearning.io import atomic_write_bytes

atomic_write_bytes(sys.argv[1], b"1" * (96 << 20))
print("first save complete", flush=True)
atomic_write_bytes(sys.argv[1], b"2" * (96 << 20))
print("second save complete", flush=True)
"""


def kill_during_second_save(script: str, target: Path) -> list[Path]:
    """Run `script`; once its first save is complete, SIGKILL it as soon as a temporary appears
    beside `target`. Returns the leftovers found after the kill."""
    process = subprocess.Popen([sys.executable, "-c", script, str(target)], env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "first save complete", process.stderr.read()
        deadline = time.monotonic() + 60
        while not any(p.name.startswith(TMP_PREFIX) for p in target.parent.iterdir()):
            assert process.poll() is None, "the second save finished before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.001)
        process.kill()
    finally:
        process.kill()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    return [p for p in target.parent.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_a_checkpoint_save_killed_mid_write_keeps_the_previous_one_and_the_next_save_cleans_up(tmp_path):
    from speech_unlearning.models.checkpoint import save_checkpoint
    from speech_unlearning.models.registry import create_model

    folder = tmp_path / "ckpt"
    leftovers = kill_during_second_save(CHECKPOINT_WRITER, folder)
    assert leftovers, "the kill did not land inside the save"
    model, metadata = load_checkpoint(folder)  # sha256-checked: the first save, complete
    assert metadata["version_written"] == 1

    save_checkpoint(folder, create_model("sid-xvector", 10, channels=8, stats_channels=8, embedding_dim=8))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # the killed save's temporaries are gone


def test_a_file_write_killed_mid_write_keeps_the_previous_content(tmp_path):
    from speech_unlearning.io import clean_stale_temporaries

    target = tmp_path / "report.json"
    leftovers = kill_during_second_save(FILE_WRITER, target)
    assert leftovers
    with open(target, "rb") as handle:
        assert handle.read(16) == b"1" * 16 and target.stat().st_size == 96 << 20
    assert sorted(clean_stale_temporaries(tmp_path)) == sorted(leftovers)
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_the_next_report_write_removes_what_a_killed_one_left(tmp_path):
    """Leftovers as a SIGKILL during atomic_write_* leaves them (see the test above)."""
    from speech_unlearning.experiments.report import write_report_files

    ResultStore.in_folder(tmp_path).close()  # an empty results database
    report = write_report_files(tmp_path, plots=False)["markdown"].parent
    leftovers = [report / f"{TMP_PREFIX}k3j2_x9a", report / "plots" / f"{TMP_PREFIX}q0w8e7r6"]
    for leftover in leftovers:
        leftover.parent.mkdir(exist_ok=True)
        leftover.write_bytes(b"half a report")
    write_report_files(tmp_path, plots=False)
    assert temporaries(tmp_path) == []
    assert (report / "report.md").read_text().strip()  # the report itself was written


def spawned_children(pid: int) -> list[int]:
    """Process ids of the multiprocessing "spawn" children of `pid`."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and b"spawn_main" in command:
            children.append(int(entry.name))
    return children


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the render processes through /proc (Linux)")
@pytest.mark.parametrize("victim", ["render worker", "builder"])
def test_a_corpus_build_killed_mid_way_keeps_the_previous_corpus(victim, tiny_cache, tmp_path):
    """Rebuilding with another config: a dead render worker fails the build at once (it used to
    hang), a dead builder leaves a temporary folder that the next load removes."""
    cache = copy_cache(tiny_cache, tmp_path / "cache")
    root = cache / "corpora" / "embedded"
    process = subprocess.Popen([*CLI, "corpus", "build", "--cache-dir", str(cache), "--no-progress",
                                "--set", "sid_speakers=10"], env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (children := spawned_children(process.pid)):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.02)
        if victim == "render worker":
            os.kill(children[0], signal.SIGKILL)
            _, stderr = process.communicate(timeout=60)
            assert process.returncode == 2 and "render process died" in stderr, stderr
        else:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            assert temporaries(cache / "corpora"), "the kill did not land inside the build"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    assert verify_embedded_corpus(root) == []  # the tiny corpus, every file matching its manifest
    assert read_manifest(root)["config"]["sid_speakers"] == 6
    load_corpus("embedded", "sid", cache_dir=cache, progress=False)
    assert temporaries(cache) == []


# ----------------------------------------------------------------------------------------------
# Determinism: the whole pipeline in two fresh interpreters.

PIPELINE = """
import sys
from pathlib import Path
from speech_unlearning.cli.main import main

def run(work, corpus_args):
    cache = str(work / "cache")
    steps = [
        ["corpus", "build", "--cache-dir", cache, "--no-progress", *corpus_args],
        ["train", "--task", "sid", "--corpus", "embedded", "--cache-dir", cache, "--out", str(work / "original"),
         "--set", "epochs=3", "--model-option", "channels=32", "--no-progress"],
        ["unlearn", "--checkpoint", str(work / "original"), "--method", "neggrad+", "--forget-ratio", "0.1",
         "--budget-seconds", "none", "--device", "cpu", "--cache-dir", cache, "--out", str(work / "unlearned"),
         "--no-progress"],
        ["evaluate", "--checkpoint", str(work / "unlearned"), "--original", str(work / "original"),
         "--device", "cpu", "--metrics", "accuracy,loss_mia,svc_mia,probe", "--cache-dir", cache,
         "--out", str(work / "eval"), "--no-progress"],
    ]
    for argv in steps:
        status = main(argv)
        if status != 0:
            sys.exit(f"{argv[0]} exited {status}")

if __name__ == "__main__":  # the corpus build spawns processes that import this module
    run(Path(sys.argv[1]), sys.argv[2:])
"""


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory) -> tuple[Path, Path]:
    """Two work folders, each filled by corpus -> train -> unlearn -> evaluate in its own interpreter
    (run at the same time, each with its own cache)."""
    root = tmp_path_factory.mktemp("pipelines")
    script = root / "pipeline.py"
    script.write_text(PIPELINE)
    works = (root / "a", root / "b")
    processes = [subprocess.Popen([sys.executable, str(script), str(work), *TINY_CORPUS_ARGS], env=ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for work in works]
    for process in processes:
        _, stderr = process.communicate(timeout=PROCESS_TIMEOUT)
        assert process.returncode == 0, stderr[-3000:]
    return works


def test_the_same_seed_gives_identical_corpus_weights_and_metrics_in_fresh_processes(pipelines):
    a, b = pipelines
    manifest = lambda work: read_manifest(work / "cache" / "corpora" / "embedded")["corpus_hash"]  # noqa: E731
    assert manifest(a) == manifest(b)
    for model in ("original", "unlearned"):
        assert (a / model / "model.safetensors").read_bytes() == (b / model / "model.safetensors").read_bytes()
    assert (a / "unlearned" / "split.json").read_text() == (b / "unlearned" / "split.json").read_text()
    report_a, report_b = (json.loads((work / "eval" / "report.json").read_text()) for work in (a, b))
    assert report_a == report_b
    assert report_a["models"]["unlearned"]["accuracy"]["df"] is not None


# ----------------------------------------------------------------------------------------------
# Bad configuration: a clear error naming the culprit, before any corpus, feature or model work.

BENCH_BAD_CONFIG = {
    "unknown preset": (["--preset", "nope"], "unknown preset 'nope'"),
    "unknown method": (["--set", "methods=gradascnt"], "unknown method 'gradascnt'"),
    "unknown model": (["--set", "sid_models=sid-xvectr"], "unknown model 'sid-xvectr'"),
    "unknown config key": (["--set", "epoch=2"], "unknown key(s) 'epoch'"),
    "unknown hyper-parameter": (["--set", "method_overrides.gradascent.lrr=1"], "unknown key(s) 'lrr'"),
    "superloss key without the variant": (["--set", "method_overrides.gradascent.superloss_lambda=1"], "+superloss"),
    "negative learning rate": (["--set", "method_overrides.gradascent.lr=-1"], "lr: must be positive"),
    "zero epochs": (["--set", "method_overrides.finetune.epochs=0"], "epochs: must be at least 1"),
    "non-numeric value": (["--set", "method_overrides.finetune.lr=fast"], "lr: expected float"),
    "forget ratio out of range": (["--set", "ratios=0.7"], "ratios: 0.7 is outside"),
    "negative budget factor": (["--set", "budget_factor=-2"], "budget_factor: must be > 0"),
    "bad model option": (["--set", "model_options.sid-xvector.channels=0"], "channels"),
}


@pytest.mark.parametrize("case", sorted(BENCH_BAD_CONFIG))
def test_bench_rejects_bad_configuration_before_any_compute(case, grid_preset, tmp_path, capsys):
    extra, message = BENCH_BAD_CONFIG[case]
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    assert main([*bench_args(grid_preset, run_dir, cache), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not run_dir.exists() and not cache.exists()


TRAIN_BAD_CONFIG = {
    "zero epochs": (["--set", "epochs=0"], "epochs"),
    "zero batch size": (["--set", "batch_size=0"], "batch_size"),
    "negative time cap": (["--set", "max_seconds=-1"], "max_seconds"),
    "bad model option": (["--model-option", "channels=-4"], "channels"),
    "unknown model option": (["--model-option", "chanels=4"], "chanels"),
}


@pytest.mark.parametrize("case", sorted(TRAIN_BAD_CONFIG))
def test_train_rejects_bad_configuration_before_any_compute(case, tmp_path, capsys):
    extra, culprit = TRAIN_BAD_CONFIG[case]
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["train", "--task", "sid", "--corpus", "embedded", "--out", str(out), "--cache-dir", str(cache),
            "--no-progress", *extra]
    assert main(argv) == 2
    assert culprit in capsys.readouterr().err
    assert not out.exists() and not cache.exists()


UNLEARN_BAD_CONFIG = {
    "unknown method": (["--method", "gradascnt", "--forget-ratio", "0.1"], "gradascnt"),
    "unknown hyper-parameter": (["--method", "gradascent", "--forget-ratio", "0.1", "--set", "lrr=1"], "'lrr'"),
    "negative learning rate": (["--method", "gradascent", "--forget-ratio", "0.1", "--set", "lr=-1"], "lr"),
    "zero epochs": (["--method", "finetune", "--forget-ratio", "0.1", "--set", "epochs=0"], "epochs"),
    "forget ratio out of range": (["--method", "gradascent", "--forget-ratio", "0"], "--forget-ratio"),
    "negative budget": (
        ["--method", "gradascent", "--forget-ratio", "0.1", "--budget-seconds", "-1"], "--budget-seconds"),
    "missing split file": (["--method", "gradascent", "--forget-split", "nowhere.json"], "nowhere.json"),
}


@pytest.mark.parametrize("case", sorted(UNLEARN_BAD_CONFIG))
def test_unlearn_rejects_bad_configuration_before_any_compute(case, pipelines, tmp_path, capsys):
    extra, culprit = UNLEARN_BAD_CONFIG[case]
    original = pipelines[0] / "original"
    before = {p.name: p.read_bytes() for p in original.iterdir()}
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["unlearn", "--checkpoint", str(original), "--out", str(out), "--cache-dir", str(cache), "--no-progress",
            *extra]
    assert main(argv) == 2
    assert culprit in capsys.readouterr().err
    assert not out.exists() and not cache.exists()
    assert {p.name: p.read_bytes() for p in original.iterdir()} == before


# ----------------------------------------------------------------------------------------------
# Bad audio: an error naming the file, or a documented conversion.


def write(path: Path, samples: np.ndarray, rate: int = 16_000, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples, rate, subtype=subtype)
    return path


def tone(seconds: float, rate: int = 16_000, hz: float = 440.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_float_audio_with_nan_or_infinity_is_rejected_naming_the_file(tmp_path, bad_value):
    samples = tone(0.1)
    samples[17] = bad_value
    path = write(tmp_path / "spk" / "bad.wav", samples, subtype="FLOAT")
    with pytest.raises(AudioError, match=f"{named(path)}: contains NaN or infinite samples"):
        read_wav(path)


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_every_pcm_and_float_encoding_reads_to_the_same_scale(tmp_path, subtype):
    expected = tone(0.05)
    audio = read_wav(write(tmp_path / f"{subtype}.wav", expected, subtype=subtype))
    assert audio.dtype == np.float32 and audio.shape == expected.shape
    np.testing.assert_allclose(audio, expected, atol=1 / 100 if subtype == "PCM_U8" else 1e-4)


def test_lower_sample_rates_are_resampled_up_to_16k(tmp_path):
    audio = read_wav(write(tmp_path / "8k.wav", tone(0.5, rate=8_000), rate=8_000))
    assert abs(len(audio) - 8_000) <= 1
    assert abs(np.argmax(np.abs(np.fft.rfft(audio))) * 16_000 / len(audio) - 440.0) <= 2


def test_multichannel_audio_is_averaged_to_mono(tmp_path):
    channels = np.stack([tone(0.05, hz=f) for f in (200.0, 300.0, 500.0, 700.0)], axis=1)  # (T, 4)
    audio = read_wav(write(tmp_path / "quad.wav", channels, subtype="FLOAT"))
    np.testing.assert_allclose(audio, channels.mean(axis=1), atol=1e-6)


def small_corpus(root: Path, count: int = 4) -> Corpus:
    """`count` one-second tones as a KWS corpus at `root` (all in the training split)."""
    utterances = []
    for index in range(count):
        path = write(root / "word" / f"spk{index}_0.wav", tone(1.0, hz=200.0 + 50 * index))
        utterances.append(Utterance(f"word/spk{index}_0", str(path), 0, f"spk{index}", "train"))
    return Corpus("small", "kws", root, ("word",), tuple(utterances), 1.0, f"fp-{count}")


def test_feature_extraction_names_a_file_with_nan_samples_and_caches_nothing(tmp_path):
    corpus = small_corpus(tmp_path / "audio")
    broken = tone(1.0)
    broken[100:200] = np.nan
    write(Path(corpus.utterances[2].path), broken, subtype="FLOAT")
    cache = tmp_path / "cache"
    with pytest.raises(AudioError, match=named(corpus.utterances[2].path)):
        load_features(corpus, feature_spec_for(corpus), cache_dir=cache, progress=False)
    assert list((cache / "features").iterdir()) == []


# ----------------------------------------------------------------------------------------------
# Safe loading: a cache file is data, never code.


class Tripwire:
    """Unpickling this creates `marker`: proof that a loader executed what it read."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_planted_in_the_feature_cache_is_never_executed(tmp_path):
    corpus = small_corpus(tmp_path / "audio")
    cache, marker = tmp_path / "cache", tmp_path / "executed"
    spec = feature_spec_for(corpus)
    expected = np.array(load_features(corpus, spec, cache_dir=cache, progress=False))
    planted = cache_entry(corpus, spec, cache) / "features.npy"
    np.save(planted, np.array([Tripwire(marker)], dtype=object), allow_pickle=True)

    np.testing.assert_array_equal(load_features(corpus, spec, cache_dir=cache, progress=False), expected)
    assert not marker.exists()  # the planted file was refused and the entry rebuilt
    np.save(tmp_path / "probe.npy", np.array([Tripwire(marker)], dtype=object), allow_pickle=True)
    np.load(tmp_path / "probe.npy", allow_pickle=True)
    assert marker.exists()  # the tripwire does fire when something unpickles it


# ----------------------------------------------------------------------------------------------
# Paths in requests and split files stay inside the corpus root (property tests).

ROOT = Path("/nonexistent-speech-unlearning-root/corpus")  # never created: checks are lexical here


def synthetic_corpus(num_utterances: int = 30) -> Corpus:
    splits = ("train", "train", "train", "validation", "test")
    utterances = tuple(
        Utterance(f"w{i % 3}/s{i % 4}_{i:03d}", str(ROOT / f"w{i % 3}" / f"s{i % 4}_{i:03d}.wav"), i % 3, f"s{i % 4}",
                  splits[i % 5])
        for i in range(num_utterances)
    )  # fmt: skip
    return Corpus("synthetic", "kws", ROOT, ("w0", "w1", "w2"), utterances, 1.0, "fp")


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.sampled_from(["..", ".", "w0", "x"]), min_size=1, max_size=8), absolute=st.booleans())
def test_a_path_is_accepted_exactly_when_it_stays_inside_the_root(parts, absolute):
    corpus = synthetic_corpus(5)
    item = posixpath.join("/nonexistent-speech-unlearning-root" if absolute else "", *parts)
    lexical = posixpath.normpath(item if absolute else posixpath.join(str(ROOT), item))
    inside = lexical == str(ROOT) or lexical.startswith(str(ROOT) + "/")
    if inside:
        assert corpus_path(corpus, item) == lexical
    else:
        with pytest.raises(CorpusError, match="outside the corpus root"):
            corpus_path(corpus, item)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_files_split_forgets_exactly_the_named_training_items(data):
    corpus = synthetic_corpus()
    train = [u for u in corpus.utterances if u.split == "train"]
    chosen = data.draw(
        st.lists(st.sampled_from(train), min_size=1, max_size=len(train) - 1, unique_by=lambda u: u.utt_id))
    forms = data.draw(st.lists(st.sampled_from(["id", "relative", "absolute", "detour"]), min_size=len(chosen),
                               max_size=len(chosen)))
    relative = {u.utt_id: os.path.relpath(u.path, ROOT) for u in chosen}
    spelled = {"id": lambda u: u.utt_id, "relative": lambda u: relative[u.utt_id], "absolute": lambda u: u.path,
               "detour": lambda u: f"w0/../{relative[u.utt_id]}"}  # '..' that stays inside the root
    items = [spelled[form](u) for form, u in zip(forms, chosen)]
    split = files_split(corpus, items)
    assert set(split.forget_ids) == {u.utt_id for u in chosen}
    forget, retain = split.forget_indices(corpus), split.retain_indices(corpus)
    assert not set(forget) & set(retain)
    assert sorted([*forget, *retain]) == sorted(corpus.indices("train"))
    assert files_split(corpus, items[::-1]).forget_ids == split.forget_ids  # the request's order does not matter
