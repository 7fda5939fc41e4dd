"""The batch streams the phases of an epoch are made of.

Every stream shuffles with the call's seeded generator, so a method's run is a deterministic
function of its seed. Four shapes cover every method:

- `forget_pass` / `retain_pass`: one shuffled pass over Df, Dr (or a subset of Dr);
- `retain_sample_pass`: a given number of batches of Dr rows, drawn when the phase starts;
- `paired_pass`: a forget batch and a retain batch per step (NegGrad+, Calibrated). The longer
  of the two sets (or Df alone) is passed once; the shorter is re-shuffled each time it runs
  out, rather than replaying the first pass's cached batches as `itertools.cycle` would;
- `mixed_pass`: Df and some retain data shuffled together, each row flagged (Bad-Teaching).
"""

from __future__ import annotations

import math
from typing import Iterator, Literal

import numpy as np
import torch

from ..training.data import ArrayData
from .base import Batch, LossFunction, PairedBatch, Phase, UnlearnContext


def _batches(ctx: UnlearnContext, data: ArrayData, batch_size: int, is_forget: bool) -> Iterator[Batch]:
    for inputs, labels, rows in data.batches(batch_size, shuffle=True, generator=ctx.generator, device=ctx.device):
        flags = torch.full((len(rows),), is_forget, dtype=torch.bool, device=ctx.device)
        yield Batch(inputs, labels, rows, flags)


def _endless(ctx: UnlearnContext, data: ArrayData, batch_size: int, is_forget: bool) -> Iterator[Batch]:
    """Fresh shuffled passes over `data`, one after another, for as long as asked."""
    while True:
        yield from _batches(ctx, data, batch_size, is_forget)


def _count(size: int, batch_size: int) -> int:
    return math.ceil(size / batch_size)


def random_positions(ctx: UnlearnContext, data: ArrayData, count: int) -> np.ndarray:
    """`count` positions within `data`, drawn without replacement with the call's generator."""
    return torch.randperm(len(data), generator=ctx.generator)[:count].numpy()


def random_retain_subset(ctx: UnlearnContext, count: int) -> ArrayData:
    """`count` distinct Dr rows (all of Dr if it is smaller), drawn with the call's generator,
    in corpus order."""
    return ctx.retain.subset(np.sort(random_positions(ctx, ctx.retain, count)))


def forget_pass(ctx: UnlearnContext, batch_size: int, loss: LossFunction, name: str = "forget") -> Phase:
    """One shuffled pass over Df."""
    return Phase(name, lambda c: _batches(c, c.forget, batch_size, True), _count(len(ctx.forget), batch_size), loss)


def retain_pass(
    ctx: UnlearnContext, batch_size: int, loss: LossFunction, name: str = "retain", data: ArrayData | None = None
) -> Phase:
    """One shuffled pass over Dr, or over `data` (a subset of Dr) when given."""
    rows = ctx.retain if data is None else data
    return Phase(name, lambda c: _batches(c, rows, batch_size, False), _count(len(rows), batch_size), loss)


def retain_sample_pass(
    ctx: UnlearnContext, num_batches: int, batch_size: int, loss: LossFunction, name: str = "retain"
) -> Phase:
    """`num_batches` batches of distinct Dr rows, drawn when the phase starts, so that the
    phases before it see the same shuffles as they would without it."""

    def source(c: UnlearnContext) -> Iterator[Batch]:
        return _batches(c, random_retain_subset(c, num_batches * batch_size), batch_size, False)

    return Phase(name, source, min(num_batches, _count(len(ctx.retain), batch_size)), loss)


def paired_pass(
    ctx: UnlearnContext,
    forget_batch_size: int,
    retain_batch_size: int,
    loss: LossFunction,
    name: str = "paired",
    over: Literal["longer", "forget"] = "longer",
    retain_data: ArrayData | None = None,
) -> Phase:
    """`PairedBatch`es; as many steps as one pass over the longer of Df and Dr needs, or, with
    `over="forget"`, over Df alone (Dr then contributes that many freshly drawn batches).
    `retain_data` (a subset of Dr) replaces Dr when given."""
    retain_rows = ctx.retain if retain_data is None else retain_data
    steps = _count(len(ctx.forget), forget_batch_size)
    if over == "longer":
        steps = max(steps, _count(len(retain_rows), retain_batch_size))

    def source(c: UnlearnContext) -> Iterator[PairedBatch]:
        forget = _endless(c, c.forget, forget_batch_size, True)
        retain = _endless(c, retain_rows, retain_batch_size, False)
        for _ in range(steps):
            yield PairedBatch(next(forget), next(retain))

    return Phase(name, source, steps, loss)


def mixed_pass(
    ctx: UnlearnContext, retain_data: ArrayData, batch_size: int, loss: LossFunction, name: str = "mixed"
) -> Phase:
    """Df and `retain_data` shuffled together; each `Batch` flags its forget rows."""
    total = len(ctx.forget) + len(retain_data)

    def source(c: UnlearnContext) -> Iterator[Batch]:
        # (from_forget, position within its set) for every row, in one seeded order.
        from_forget = np.concatenate([np.ones(len(c.forget), bool), np.zeros(len(retain_data), bool)])
        positions = np.concatenate([np.arange(len(c.forget)), np.arange(len(retain_data))])
        order = torch.randperm(total, generator=c.generator).numpy()
        for start in range(0, total, batch_size):
            chosen = order[start : start + batch_size]
            parts = [
                _load(c, c.forget, positions[chosen][from_forget[chosen]], True),
                _load(c, retain_data, positions[chosen][~from_forget[chosen]], False),
            ]
            yield _concatenate([p for p in parts if p is not None])

    return Phase(name, source, _count(total, batch_size), loss)


def _load(ctx: UnlearnContext, data: ArrayData, positions: np.ndarray, is_forget: bool) -> Batch | None:
    if len(positions) == 0:
        return None
    inputs, labels, rows = next(data.subset(positions).batches(len(positions), device=ctx.device))
    return Batch(inputs, labels, rows, torch.full((len(rows),), is_forget, dtype=torch.bool, device=ctx.device))


def _concatenate(parts: list[Batch]) -> Batch:
    if len(parts) == 1:
        return parts[0]
    return Batch(
        torch.cat([p.inputs for p in parts]),
        torch.cat([p.labels for p in parts]),
        np.concatenate([p.indices for p in parts]),
        torch.cat([p.is_forget for p in parts]),
    )
