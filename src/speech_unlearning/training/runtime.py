"""Where and how a run executes: seeding, device choice, deterministic kernels, CPU threads, and
the budget (wall clock and optimiser steps) that caps it.

Shared by `fit` and the unlearning engine, so both seed, place and cap a run the same way.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from typing import Iterator

import numpy as np
import torch
from torch import nn


class Budget:
    """A wall-clock allowance that starts when constructed, and optionally a number of optimiser
    steps (a cap that does not depend on the machine's speed); None never runs out."""

    def __init__(self, seconds: float | None, steps: int | None = None):
        if seconds is not None and not seconds > 0:
            raise ValueError(f"budget seconds must be positive or None, got {seconds}")
        if steps is not None and not steps >= 1:
            raise ValueError(f"budget steps must be at least 1 or None, got {steps}")
        self.seconds = seconds
        self.steps = steps
        self._start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    @property
    def remaining(self) -> float:
        return math.inf if self.seconds is None else max(0.0, self.seconds - self.elapsed)

    def exhausted(self, steps_taken: int = 0) -> bool:
        if self.steps is not None and steps_taken >= self.steps:
            return True
        return self.seconds is not None and self.elapsed >= self.seconds


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a fresh CPU generator for shuffling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def select_device(name: str = "auto") -> torch.device:
    """"auto" picks the GPU when one is present, else the CPU; an unavailable device is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"device {name!r} is not auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        # cuBLAS needs this before its first call to be deterministic; harmless otherwise.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} requested but MPS is not available on this machine")
    return device


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True, device: torch.device | None = None) -> Iterator[None]:
    """Use deterministic torch kernels inside the block (warn, not fail, where none exists).

    With `enabled=False`, or on a CPU `device` (CPU kernels are deterministic already, and the
    switch costs ~1.7 s the first time: it imports torch._dynamo), the block runs under whatever
    the caller has set.
    """
    if not enabled or (device is not None and device.type == "cpu"):
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_benchmark = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn_only)
        torch.backends.cudnn.benchmark = previous_benchmark


@contextlib.contextmanager
def cpu_threads(count: int) -> Iterator[None]:
    """Let torch use `count` intra-op CPU threads inside the block (0 = leave the setting alone).

    Small models gain little from splitting their small kernels across threads, and on a busy
    machine every split kernel waits for its slowest thread: measured on two shared cores,
    one thread trained kws-resnet 3-5x faster than two.
    """
    if count == 0:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameter-free model)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
