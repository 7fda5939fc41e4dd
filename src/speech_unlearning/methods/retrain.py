"""Retrain: train a fresh model on Dr alone with the original recipe, the gold standard every
unlearning method is measured against; its wall time defines the default budget of the others.

The model is rebuilt from the original's `build_args` by the model registry (fresh weights, the
call's seed) and trained by `training.trainer.fit` with the original `TrainConfig` (passed as
`train_config`), seeded with the call's seed and capped by the budget, and with the recipe's batch
augmentation where it has one (the caller's `augmenter`, seeded with the call's seed). A model built outside
the registry (no `build_args`) is re-initialised layer by layer instead. An imported model
starts from the starting point recorded at import (`base.starting_model_like`): for a classifier
fine-tuned from a pretrained encoder, that encoder with a fresh head, not random weights.

By default it runs the original's epochs on Dr, as the paper's Retrain does, and so takes fewer
optimiser steps than the original (Dr is smaller). `match="steps"` gives it the original's number
of steps instead, in whole epochs. The original's training set is counted as Df + Dr; after
earlier requests, whose data is in neither, that is the step count of a model retrained without
them, which is what the model being unlearned stands for. Where the recipe stops short of
convergence, this is the reference that differs from the original only by the forgotten data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from ..config import ConfigError, require
from ..training.config import TrainConfig, TrainResult
from ..training.trainer import fit, step_matched_epochs, steps_per_epoch
from .base import Method, UnlearnContext, register_method, starting_model_like


# Retrain r of a request (r = 0, 1, ...) trains with the Original's seed + RETRAIN_SEED_OFFSET * (r + 1):
# never with the Original's own initialisation and batch order, which would favour methods that
# barely move the Original.
RETRAIN_SEED_OFFSET = 1_000


def retrain_seed(original_seed: int, replica: int = 0) -> int:
    """Training seed of Retrain `replica` of a model whose Original trained with `original_seed`."""
    return original_seed + RETRAIN_SEED_OFFSET * (replica + 1)


@dataclass(frozen=True)
class RetrainRun:
    """What a Retrain trained with and what its training did (`UnlearnResult.training`)."""

    recipe: TrainConfig
    result: TrainResult


@dataclass
class RetrainConfig:
    epochs: int | None = field(
        default=None, metadata={"help": "override the recipe's epochs (and `match`); None = the original's"}
    )
    match: Literal["epochs", "steps"] = field(
        default="epochs",
        metadata={"help": "epochs: the original's epochs on Dr (the paper's Retrain, fewer optimiser steps); "
                          "steps: as many optimiser steps as the original took on Df + Dr, in whole epochs"},
    )
    use_validation: bool = field(
        default=True, metadata={"help": "early stopping on the validation data, as the original recipe"}
    )

    def __post_init__(self) -> None:
        require(self.epochs is None or self.epochs >= 1, "epochs", f"must be at least 1 or None, got {self.epochs}")


@register_method("retrain")
class Retrain(Method):
    summary = "train from scratch on Dr with the original recipe (gold standard; defines the budget)"
    objective_reads = ()  # trains on Dr from scratch
    config_class = RetrainConfig
    loss_roles = ()

    def check(self, config: RetrainConfig, forget, retain, train_config) -> None:
        if train_config is None:
            raise ConfigError("method retrain: needs the original model's TrainConfig (train_config=...)")

    def run(self, ctx: UnlearnContext) -> None:
        remaining = ctx.budget.remaining
        recipe = dataclasses.replace(
            ctx.train_config,
            seed=ctx.seed,
            epochs=self.planned_epochs(ctx),
            max_seconds=None if remaining == float("inf") else max(remaining, 1e-3),
            progress=ctx.progress,
            device=str(ctx.device),
        )
        ctx.model = starting_model_like(ctx.original)
        ctx.planned_steps = recipe.epochs * steps_per_epoch(len(ctx.retain), recipe.batch_size)
        validation = ctx.validation if ctx.config.use_validation else None
        result = fit(ctx.model, ctx.retain, validation, recipe, augment=self.augment(ctx, recipe))
        ctx.steps, ctx.budget_exhausted = result.steps, result.budget_exhausted
        ctx.training = RetrainRun(recipe, result)
        ctx.log.extend({"phase": "train", **row} for row in result.history)

    @staticmethod
    def augment(ctx: UnlearnContext, recipe):
        """The batch augmenter of the Original's recipe, seeded with this Retrain's seed (None: it did not augment)."""
        if not recipe.augments:
            return None
        if ctx.augmenter is None:
            raise ConfigError("method retrain: the original recipe augments its batches; the call must pass the "
                              "corpus's augmenter (augmenter=...), or the Retrain would train differently")
        return ctx.augmenter(recipe)

    @staticmethod
    def planned_epochs(ctx: UnlearnContext) -> int:
        """The configured epochs, else the recipe's, or (match="steps") those that give Dr the original's step count."""
        recipe = ctx.train_config
        if ctx.config.epochs:
            return ctx.config.epochs
        if ctx.config.match == "epochs":
            return recipe.epochs
        return step_matched_epochs(recipe.epochs, len(ctx.forget) + len(ctx.retain), len(ctx.retain), recipe.batch_size)
