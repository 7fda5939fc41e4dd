"""Where runs execute: in this process, in a pool of worker processes, or as Ray tasks.

An executor runs `execute_run(stage_function, job)` somewhere and hands the `RunOutcome` back
to the driver, which alone writes the results database. Executors never raise for a failing
run: the outcome carries the error text, and a crashed worker becomes a failed outcome too, so
one bad run never stops the grid.

Interface (all three): `capacity` (runs in flight at most), `submit(function, job) -> handle`,
`wait(handles) -> [(handle, outcome), ...]` (blocks until at least one is finished) and `close()`.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from ..registry import Registry


@dataclass(frozen=True)
class Job:
    """One run of the plan as handed to an executor: everything a worker needs to execute it;
    plain data, so it pickles anywhere.

    `inputs` maps the key of each dependency to {"stage", "config", "artefacts" (absolute
    paths), "seconds", "metrics"}; `extra` holds values resolved by the driver at submit time
    (e.g. "budget_seconds" from the matching Retrain, "overrides" chosen by tuning).
    """

    key: str
    stage: str
    config: dict[str, Any]
    run_dir: str
    cache_dir: str | None = None
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        """The folder this run's artefacts go to: RUN_DIR/<stage>/<key prefix>."""
        return f"{self.run_dir}/{self.stage}/{self.key[:16]}"

    def input(self, key: str) -> dict[str, Any]:
        """The record of dependency `key`; a clear error if the driver did not provide it."""
        try:
            return self.inputs[key]
        except KeyError:
            raise KeyError(f"run {self.key[:12]}: input {key[:12]} missing (dependency not finished)") from None


@dataclass(frozen=True)
class StageResult:
    """What a stage function returns: metrics JSON, artefacts (paths relative to the run folder),
    the wall time of the stage's core work (training or unlearning call), other timings."""

    metrics: dict[str, Any] | None = None
    artefacts: dict[str, str] = field(default_factory=dict)
    seconds: float | None = None
    timings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOutcome:
    """The result of one run as the driver records it."""

    key: str
    ok: bool
    result: StageResult | None = None
    error: str | None = None
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of the worker process (all threads) during the run


StageFunction = Callable[[Job], StageResult]


def describe_exception(error: BaseException) -> str:
    """"TypeName: message" followed by the traceback, for the database's error column."""
    summary = f"{type(error).__name__}: {error}"
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return f"{summary}\n\n{trace}"


def execute_run(function: StageFunction, job: Job) -> RunOutcome:
    """Run one stage function; any exception becomes a failed outcome with its traceback."""
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        result = function(job)
        if not isinstance(result, StageResult):
            raise TypeError(f"stage {job.stage!r} returned {type(result).__name__}, expected StageResult")
    except Exception as error:  # a failed run is recorded; the grid goes on
        return RunOutcome(job.key, False, error=describe_exception(error), wall_seconds=time.perf_counter() - start,
                          cpu_seconds=time.process_time() - cpu_start)
    return RunOutcome(job.key, True, result=result, wall_seconds=time.perf_counter() - start,
                      cpu_seconds=time.process_time() - cpu_start)


class Executor(Protocol):
    capacity: int

    def submit(self, function: StageFunction, job: Job) -> Any: ...

    def wait(self, handles: list[Any]) -> list[tuple[Any, RunOutcome]]: ...

    def close(self) -> None: ...


class InProcessExecutor:
    """Runs each run synchronously in the driver process (the default; easiest to debug)."""

    capacity = 1

    def __init__(self) -> None:
        self._finished: dict[int, RunOutcome] = {}
        self._next = 0

    def submit(self, function: StageFunction, job: Job) -> int:
        handle = self._next
        self._next += 1
        self._finished[handle] = execute_run(function, job)
        return handle

    def wait(self, handles: list[int]) -> list[tuple[int, RunOutcome]]:
        return [(handle, self._finished.pop(handle)) for handle in handles if handle in self._finished]

    def close(self) -> None:
        self._finished.clear()


class PoolExecutor:
    """Runs in `workers` separate processes (spawned, so no state is shared with the driver)."""

    def __init__(self, workers: int):
        self.capacity = workers
        self._pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        self._jobs: dict[concurrent.futures.Future, Job] = {}

    def submit(self, function: StageFunction, job: Job) -> concurrent.futures.Future:
        future = self._pool.submit(execute_run, function, job)
        self._jobs[future] = job
        return future

    def wait(self, handles: list[concurrent.futures.Future]) -> list[tuple[Any, RunOutcome]]:
        done, _ = concurrent.futures.wait(handles, return_when=concurrent.futures.FIRST_COMPLETED)
        finished = []
        for future in done:
            job = self._jobs.pop(future)
            try:
                outcome = future.result()
            except Exception as error:  # the worker process died (e.g. killed for memory)
                outcome = RunOutcome(job.key, False, error=f"worker process failed: {describe_exception(error)}")
            finished.append((future, outcome))
        return finished

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """One Ray task per run, each reserving `cpus_per_run` CPUs and `gpus_per_run` GPUs.

    Connects to `address` (a running cluster, "auto") or starts a local instance; if Ray is
    already initialised in this process (e.g. by a test), that instance is used and left running.
    """

    def __init__(self, address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0):
        import ray

        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, include_dashboard=False, logging_level="WARNING")
        self._remote = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)(execute_run)
        self._jobs: dict[Any, Job] = {}
        self.capacity = self._slots(cpus_per_run, gpus_per_run)

    def _slots(self, cpus_per_run: float, gpus_per_run: float) -> int:
        """How many runs the cluster can hold at once (at least one)."""
        resources = self._ray.cluster_resources()
        slots = resources.get("CPU", 1.0) / cpus_per_run
        if gpus_per_run > 0:
            gpus = resources.get("GPU", 0.0)
            if gpus < gpus_per_run:
                raise ValueError(f"--gpus-per-run {gpus_per_run}: the Ray cluster has {gpus:g} GPU(s)")
            slots = min(slots, gpus / gpus_per_run)
        return max(1, int(slots))

    def submit(self, function: StageFunction, job: Job) -> Any:
        reference = self._remote.remote(function, job)
        self._jobs[reference] = job
        return reference

    def wait(self, handles: list[Any]) -> list[tuple[Any, RunOutcome]]:
        ready, _ = self._ray.wait(handles, num_returns=1)
        finished = []
        for reference in ready:
            job = self._jobs.pop(reference)
            try:
                outcome = self._ray.get(reference)
            except Exception as error:  # the worker died or the Ray task could not be scheduled
                outcome = RunOutcome(job.key, False, error=f"ray task failed: {describe_exception(error)}")
            finished.append((reference, outcome))
        return finished

    def close(self) -> None:
        for reference in list(self._jobs):
            self._ray.cancel(reference, force=True)
        self._jobs.clear()
        if self._owns_ray:
            self._ray.shutdown()


ExecutorFactory = Callable[..., Executor]
EXECUTORS: Registry[ExecutorFactory] = Registry("executor")


@EXECUTORS.register("local")
def local_executor(workers: int = 1, **_: Any) -> Executor:
    """In-process for one worker, else a process pool of `workers`."""
    return InProcessExecutor() if workers <= 1 else PoolExecutor(workers)


@EXECUTORS.register("ray")
def ray_executor(address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0, **_: Any) -> Executor:
    return RayExecutor(address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)


def make_executor(name: str, **options: Any) -> Executor:
    """The executor called `name` ("local" or "ray"); options: workers, address, cpus_per_run, gpus_per_run."""
    return EXECUTORS.get(name)(**options)
