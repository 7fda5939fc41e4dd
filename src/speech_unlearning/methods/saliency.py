"""Weight saliency for forgetting, and keeping chosen weights exactly where they started.

SalUn trains only the weights whose forget-loss gradient is largest; Calibrated keeps the head
rows of retained classes fixed. Both need the same guarantee: a weight that may not move ends
the run bit-identical to its starting value, which gradient masking alone does not give (weight
decay and momentum still move it: the SalUn reference's bug, fixed in its PR #33).
`FrozenWeightsMethod` gives a method that guarantee around every optimiser step.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from ..training.inference import per_sample_loss
from .base import Method, UnlearnContext


def forget_gradients(ctx: UnlearnContext, batch_size: int) -> dict[str, torch.Tensor]:
    """Gradient of the forget loss summed over every batch of Df, per trainable parameter
    that receives one; the model is in eval mode for the pass and its .grad is cleared after."""
    model = ctx.model
    model.eval()
    model.zero_grad(set_to_none=True)
    for inputs, labels, _ in ctx.forget.batches(batch_size, device=ctx.device):
        # The forget loss is −CE; its sign does not change |gradient|. backward() accumulates.
        (-per_sample_loss(model(inputs), labels).mean()).backward()
    gradients = {name: p.grad.detach().clone() for name, p in ctx.trainable_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    model.train()
    return gradients


def top_fraction_mask(gradients: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """Boolean masks marking the floor(ratio·N) largest |gradient| entries over all tensors."""
    magnitudes = torch.cat([g.abs().flatten() for g in gradients.values()])  # (N,)
    keep = int(len(magnitudes) * ratio)
    order = torch.argsort(magnitudes, descending=True, stable=True)
    flat = torch.zeros(len(magnitudes), dtype=torch.bool, device=magnitudes.device)
    flat[order[:keep]] = True
    masks, start = {}, 0
    for name, gradient in gradients.items():
        masks[name] = flat[start : start + gradient.numel()].view_as(gradient)
        start += gradient.numel()
    return masks


def salient_weights(ctx: UnlearnContext, batch_size: int, ratio: float) -> "FrozenCoordinates":
    """Every trainable weight outside the top `ratio` by forget-gradient saliency, held fixed;
    parameters that get no gradient are held fixed whole."""
    return freeze_all_but_top(ctx, forget_gradients(ctx, batch_size), ratio)


def freeze_all_but_top(ctx: UnlearnContext, gradients: dict[str, torch.Tensor], ratio: float) -> "FrozenCoordinates":
    """Every trainable weight outside the top `ratio` by |gradient|, held fixed at its current
    value; parameters absent from `gradients` are held fixed whole."""
    salient = top_fraction_mask(gradients, ratio)
    return FrozenCoordinates(
        [(p, salient.get(name, torch.zeros_like(p, dtype=torch.bool))) for name, p in ctx.trainable_parameters()]
    )


class FrozenCoordinates:
    """Holds the coordinates of some parameters at their starting values, bit for bit.

    Built from (parameter, movable) pairs, `movable` a boolean mask of the parameter's shape.
    Call `mask_gradients` after backward and `restore` after every optimiser step.
    """

    def __init__(self, movable: list[tuple[nn.Parameter, torch.Tensor]]):
        self.entries = [(p, mask, p.detach().clone()) for p, mask in movable if not bool(mask.all())]

    def mask_gradients(self) -> None:
        for parameter, mask, _ in self.entries:
            if parameter.grad is not None:
                parameter.grad.mul_(mask)

    def restore(self, optimizer: torch.optim.Optimizer) -> None:
        """Undo what weight decay and momentum did to the fixed coordinates, and zero their
        optimiser state so nothing carries over to the next step."""
        with torch.no_grad():
            for parameter, mask, start in self.entries:
                parameter.copy_(torch.where(mask, parameter, start))
                for value in optimizer.state.get(parameter, {}).values():
                    if torch.is_tensor(value) and value.shape == parameter.shape:
                        value.masked_fill_(~mask, 0)


def rows_fixed_but(parameters: Iterable[nn.Parameter], movable_rows: torch.Tensor) -> FrozenCoordinates:
    """Every row (first index) of each parameter held fixed but those `movable_rows` (bool) marks:
    for a linear head a row is a class, so only the chosen classes' weights and biases move."""
    return FrozenCoordinates([(p, movable_rows.view(-1, *[1] * (p.dim() - 1)).expand_as(p)) for p in parameters])


class FrozenWeightsMethod(Method):
    """A method whose `frozen` weights (FrozenCoordinates; None = none) get no gradient and are
    restored after every optimiser step, so they end the run exactly where they started."""

    frozen: FrozenCoordinates | None = None

    def before_step(self, ctx: UnlearnContext) -> None:
        if self.frozen is not None:
            self.frozen.mask_gradients()

    def after_step(self, ctx: UnlearnContext) -> None:
        if self.frozen is not None:
            self.frozen.restore(ctx.optimizer)
