"""Optimisers by name and learning-rate schedules.

`make_optimizer` builds one from the `OPTIMIZERS` registry ("adamw" | "adam" | "sgd"), so `fit`,
the unlearning methods and the relearning attack all read the same names; `make_scheduler` gives
the warm-up-then-decay schedules of `TrainConfig.schedule`.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Iterable

import torch

from ..registry import Registry

OptimizerFactory = Callable[..., torch.optim.Optimizer]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")
SCHEDULES: tuple[str, ...] = ("constant", "linear", "cosine")


@OPTIMIZERS.register("adamw")
def _adamw(params, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("adam")
def _adam(params, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)  # weight decay as L2 penalty


@OPTIMIZERS.register("sgd")
def _sgd(params, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def make_optimizer(
    params: Iterable[torch.nn.Parameter] | Iterable[dict],
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """An optimiser by name ("adamw" | "adam" | "sgd"); unknown names list the valid ones."""
    return OPTIMIZERS.get(name)(params, lr=lr, weight_decay=weight_decay, momentum=momentum)


@functools.cache
def preload_optimizer_imports() -> None:
    """Build and drop a throwaway optimiser, once per process.

    torch imports its compiler stack the first time any optimiser is built in a process (1-2 s on
    a small CPU). Timed code calls this before its clock starts, so whichever run comes first in
    a worker process is not charged for it and time ratios compare like with like.
    """
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, total_steps: int, warmup_steps: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_steps`, then constant, linear decay to 0, or cosine decay to 0.

    Call `.step()` once after every optimiser step.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r} is not one of {', '.join(SCHEDULES)}")
    decay_steps = max(1, total_steps - warmup_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min(1.0, (step - warmup_steps) / decay_steps)
        if schedule == "linear":
            return 1.0 - progress
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
