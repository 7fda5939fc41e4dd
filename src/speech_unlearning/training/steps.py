"""The optimisation step every training run in the toolkit takes, and the running statistics of
its log rows.

`Stepper.step(loss)` is the one place that turns a loss into a weight update, for `fit` and for
the unlearning engine alike: zero_grad -> backward -> before-step hook -> gradient-norm clipping
-> optimiser step -> after-step hook -> step count -> budget check -> progress bar. The hooks are
where the callers differ: `fit` steps its learning-rate schedule after each update, a method masks
gradients before it and restores frozen weights after it.
"""

from __future__ import annotations

import sys
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm import tqdm

from .runtime import Budget

Hook = Callable[[], None]


def progress_bar(total: int | None, desc: str, enabled: bool) -> tqdm:
    """A progress bar of optimiser steps on stderr; a silent one when not `enabled`."""
    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, disable=not enabled, dynamic_ncols=True)


class Stepper:
    """Takes the optimiser steps of one run, counts them and checks them against its budget.

    - `parameters`: the ones whose gradient norm is clipped to `max_grad_norm` (None: no clipping).
    - `before_step` runs after backward, before clipping; `after_step` runs after the optimiser step.
    - `total_steps`, `desc`, `progress`: the progress bar (`total_steps` None: unknown length).
    Use it as a context manager, so the progress bar is closed however the run ends.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        parameters: Iterable[nn.Parameter],
        budget: Budget,
        *,
        max_grad_norm: float | None = None,
        before_step: Hook | None = None,
        after_step: Hook | None = None,
        total_steps: int | None = None,
        desc: str = "train",
        progress: bool = False,
    ):
        self.optimizer = optimizer
        self.parameters = list(parameters)
        self.budget = budget
        self.max_grad_norm = max_grad_norm
        self.before_step = before_step
        self.after_step = after_step
        self.bar = progress_bar(total_steps, desc, progress)
        self.steps = 0  # optimiser steps taken so far in this run
        self.budget_exhausted = False

    def __enter__(self) -> "Stepper":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    def step(self, loss: torch.Tensor) -> bool:
        """One update that descends `loss` (a scalar); True once the budget has run out.

        The budget is checked after the update, so every run takes at least one step.
        """
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.before_step is not None:
            self.before_step()
        if self.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.parameters, self.max_grad_norm)
        self.optimizer.step()
        if self.after_step is not None:
            self.after_step()
        self.steps += 1
        self.budget_exhausted = self.budget.exhausted(self.steps)
        self.bar.update(1)
        return self.budget_exhausted

    def show(self, postfix: dict, refresh: bool = False) -> None:
        """Show `postfix` (e.g. epoch and running loss) after the progress bar."""
        self.bar.set_postfix(postfix, refresh=refresh)


class RunningSums:
    """Running sums of per-example values by name (losses, correct answers), and their counts.

    The sums stay tensors on the model's device, so adding to them never waits for a step to
    finish; they are read (`mean`, `total`) once per log row. With `dtype`, each step's sum is
    cast to it before it is added (`fit` accumulates an epoch in float64); without, sums keep the
    values' dtype.
    """

    def __init__(self, dtype: torch.dtype | None = None):
        self.dtype = dtype
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, values: torch.Tensor) -> None:
        """Add the sum and the number of `values` (any shape; detached) to `name`."""
        step_sum = values.detach().sum()
        if self.dtype is not None:
            step_sum = step_sum.to(self.dtype)
        self.sums[name] = self.sums.get(name, 0) + step_sum
        self.counts[name] = self.counts.get(name, 0) + values.numel()

    def __contains__(self, name: str) -> bool:
        return name in self.sums

    def names(self) -> list[str]:
        """The names in the order they were first added."""
        return list(self.sums)

    def count(self, name: str) -> int:
        return self.counts.get(name, 0)

    def total(self, name: str) -> float:
        return float(self.sums[name]) if name in self.sums else 0.0

    def mean(self, name: str) -> float:
        """Mean of every value added to `name`; NaN when none was."""
        count = self.count(name)
        return self.total(name) / count if count else float("nan")
