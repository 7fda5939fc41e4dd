"""The one engine every method runs in: `unlearn(name, original_model, forget, retain, ...)`.

It validates the request before any compute, deep-copies the original model (which is never
modified), seeds everything, builds the optimiser with `training.optim.make_optimizer`, and walks
the phases of the method's epochs batch by batch: loss terms -> (SuperLoss) -> reduction -> the shared
optimisation step (`training.steps.Stepper`: backward, the method's hooks, clipping, the optimiser
step, the budget check after every step). It times the unlearning alone: from the copy of the
original to the last update, excluding config parsing and checks.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ..config import ConfigError, from_mapping
from ..training.data import ArrayData
from ..training.optim import make_optimizer, preload_optimizer_imports
from ..training.runtime import Budget, deterministic_algorithms, model_device, seed_everything
from ..training.steps import RunningSums, Stepper
from .base import (
    SUPERLOSS_SUFFIX,
    Method,
    Phase,
    Term,
    UnlearnContext,
    UnlearnResult,
    dataclass_fields,
    split_method_name,
)
from .superloss import SuperLoss, SuperLossConfig, superloss_roles


def unlearn(
    name: str,
    original_model: nn.Module,
    forget: ArrayData,
    retain: ArrayData,
    overrides: Mapping[str, Any] | None = None,
    budget_seconds: float | None = None,
    seed: int = 0,
    validation: ArrayData | None = None,
    train_config: Any = None,
    progress: bool = False,
    budget_steps: int | None = None,
    parsed: tuple[Any, SuperLossConfig | None] | None = None,
    augmenter: Callable[[Any], Any] | None = None,
) -> UnlearnResult:
    """Unlearn `forget` from a copy of `original_model` with method `name`; return the copy.

    - `name`: a registered method, optionally with "+superloss" (e.g. "scrub+superloss").
    - `overrides`: config values by field name (strings from `--set` are converted); an
      unknown key raises ConfigError naming it and listing the valid keys.
    - `budget_seconds`: wall-clock cap; the method stops after the step that crosses it and
      the result says so (`budget_exhausted`). None = run the whole schedule.
    - `budget_steps`: a cap in optimiser steps of the shared loop, which, unlike a time budget,
      stops a run at the same point under any load (methods with their own loop ignore it).
    - `validation`: held-out data for methods that select weights on it (Retrain, as in the
      original recipe); `train_config`: the original model's TrainConfig (Retrain needs it).
    - `parsed`: the (config, SuperLoss config) `parse_method_config` already built for `name`;
      when given, `overrides` are not parsed again.
    - `augmenter(recipe) -> augment`: the Original recipe's batch augmenter for a recipe with the
      run's seed (`training.recipes.augmenter_for` on the corpus); Retrain trains with it.
    - Runs on the device `original_model` is on; `forget` and `retain` must be disjoint.
    """
    method_class, with_superloss = split_method_name(name)
    if parsed is None:
        parsed = parse_method_config(method_class, with_superloss, overrides, name)
    config, superloss_config = parsed
    _check_request(forget, retain, budget_seconds, budget_steps, seed)
    num_classes = _num_classes(original_model)
    method = method_class()
    method.check(config, forget, retain, train_config)
    preload_optimizer_imports()  # outside the clock
    with deterministic_algorithms(True, model_device(original_model)):
        generator = seed_everything(seed)
        budget = Budget(budget_seconds, budget_steps)  # starts the clock
        ctx = UnlearnContext(
            model=copy.deepcopy(original_model),
            original=original_model,
            forget=forget,
            retain=retain,
            validation=validation,
            config=config,
            train_config=train_config,
            device=model_device(original_model),
            generator=generator,
            budget=budget,
            seed=seed,
            num_classes=num_classes,
            progress=progress,
            augmenter=augmenter,
        )
        if superloss_config is not None:
            roles = superloss_roles(superloss_config.superloss_on, method_class.loss_roles)
            ctx.superloss = {role: SuperLoss(superloss_config) for role in roles}
        if type(method).run is not Method.run:
            method.run(ctx)
        else:
            _optimise(method, ctx)
        seconds = budget.elapsed
    ctx.model.eval()
    return UnlearnResult(
        model=ctx.model,
        seconds=seconds,
        steps=ctx.steps,
        log=ctx.log,
        budget_exhausted=ctx.budget_exhausted,
        config=config,
        name=name,
        superloss=superloss_config,
        seed=seed,
        diverged=ctx.diverged,
        planned_steps=ctx.planned_steps,
        training=ctx.training,
    )


def parse_method_config(
    method_class: type[Method], with_superloss: bool, overrides: Mapping[str, Any] | None, name: str
) -> tuple[Any, SuperLossConfig | None]:
    """Build the method's config (and the SuperLoss options of a "+superloss" name) from overrides."""
    values = dict(overrides or {})
    method_keys = dataclass_fields(method_class.config_class)
    superloss_keys = dataclass_fields(SuperLossConfig) if with_superloss else []
    unknown = sorted(set(values) - set(method_keys) - set(superloss_keys))
    if unknown:
        hint = ""
        if not with_superloss and any(key in dataclass_fields(SuperLossConfig) for key in unknown):
            hint = f" (superloss_* options need a '{SUPERLOSS_SUFFIX}' variant, e.g. '{name}{SUPERLOSS_SUFFIX}')"
        raise ConfigError(
            f"method {name}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(sorted(method_keys + superloss_keys))}{hint}"
        )
    where = f"method {name}"
    config = from_mapping(method_class.config_class, {k: v for k, v in values.items() if k in method_keys}, where)
    superloss = None
    if with_superloss:
        superloss = from_mapping(SuperLossConfig, {k: v for k, v in values.items() if k in superloss_keys}, where)
        try:
            superloss_roles(superloss.superloss_on, method_class.loss_roles)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
    return config, superloss


def _check_request(
    forget: ArrayData, retain: ArrayData, budget_seconds: float | None, budget_steps: int | None, seed: int
) -> None:
    if len(forget) == 0:
        raise ValueError("unlearn: the forget set is empty; nothing to unlearn")
    if len(retain) == 0:
        raise ValueError("unlearn: the retain set is empty; every method needs retained data to keep utility")
    overlap = np.intersect1d(forget.indices, retain.indices)
    if len(overlap):
        raise ValueError(
            f"unlearn: {len(overlap)} example(s) are in both the forget and the retain set "
            f"(first corpus index {int(overlap[0])}); Dr must be the training set minus Df"
        )
    if budget_seconds is not None and not budget_seconds > 0:
        raise ValueError(f"unlearn: budget_seconds must be positive or None, got {budget_seconds}")
    if budget_steps is not None and not (isinstance(budget_steps, int) and budget_steps >= 1):
        raise ValueError(f"unlearn: budget_steps must be a positive integer or None, got {budget_steps!r}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"unlearn: seed must be in [0, 2**32), got {seed}")


def _num_classes(model: nn.Module) -> int:
    count = getattr(model, "num_classes", None)
    if count is None:
        raise ValueError(f"unlearn: the model ({type(model).__name__}) has no num_classes attribute")
    return int(count)


# --------------------------------------------------------------------------------------------
# The optimisation loop


def _optimise(method: Method, ctx: UnlearnContext) -> None:
    params = [p for _, p in ctx.trainable_parameters()]
    if not params:
        raise ValueError("unlearn: the model has no trainable parameters")
    cfg = ctx.config
    ctx.optimizer = make_optimizer(params, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    method.setup(ctx)
    # Phases are built epoch by epoch (a long schedule must not spend its budget building them);
    # the planned total extrapolates the first epoch unless the method knows better.
    first_phases = method.epoch_phases(ctx, 0)
    ctx.planned_steps = method.planned_steps(ctx, first_phases)
    stepper = Stepper(
        ctx.optimizer,
        [p for _, p in ctx.trainable_parameters()],  # clipped: the trainable ones as `setup` left them
        ctx.budget,
        max_grad_norm=cfg.max_grad_norm,
        before_step=lambda: method.before_step(ctx),
        after_step=lambda: method.after_step(ctx),
        total_steps=ctx.planned_steps,
        desc=method.name,
        progress=ctx.progress,
    )
    with stepper:
        for epoch in range(cfg.epochs):
            for phase in first_phases if epoch == 0 else method.epoch_phases(ctx, epoch):
                if ctx.budget_exhausted or ctx.diverged:
                    return
                _run_phase(ctx, stepper, epoch, phase)


def _run_phase(ctx: UnlearnContext, stepper: Stepper, epoch: int, phase: Phase) -> None:
    """Train on every batch of `phase`; stop early on budget exhaustion or a non-finite loss."""
    ctx.model.train()
    stats = _PhaseStats()
    for batch in phase.batches(ctx):
        loss = _reduce(ctx, phase.loss(ctx, batch), stats)
        if not torch.isfinite(loss):
            ctx.diverged = True  # keep the last finite weights rather than step into NaN
            break
        ctx.budget_exhausted = stepper.step(loss)
        ctx.steps = stepper.steps
        stats.steps += 1
        if ctx.budget_exhausted:
            break
    ctx.log.append(stats.row(ctx, epoch, phase.name))
    stepper.show(dict(epoch=epoch + 1, phase=phase.name, loss=f"{ctx.log[-1]['objective']:.4f}"))


def _reduce(ctx: UnlearnContext, terms: list[Term], stats: "_PhaseStats") -> torch.Tensor:
    """Σ sign·weight·Σ(losses)/denominator over the terms, SuperLoss-weighted where switched on."""
    total = torch.zeros((), device=ctx.device)
    for term in terms:
        if term.losses.numel() == 0:
            continue
        stats.losses.add(term.role, term.losses)
        losses = ctx.superloss[term.role](term.losses) if term.role in ctx.superloss else term.losses
        denominator = term.denominator if term.denominator is not None else losses.numel()
        total = total + term.sign * term.weight * losses.sum() / denominator
    stats.objective.add("objective", total)
    return total


class _PhaseStats:
    """The numbers behind one log row: the phase's steps, its objective and its losses by role."""

    def __init__(self) -> None:
        self.steps = 0
        # One value per reduced batch; a diverged batch's non-finite value stays in, so the row shows it.
        self.objective = RunningSums()
        self.losses = RunningSums()  # per-example losses by role, before SuperLoss weighting

    def row(self, ctx: UnlearnContext, epoch: int, phase: str) -> dict:
        row: dict[str, Any] = {"epoch": epoch + 1, "phase": phase, "steps": self.steps}
        row["objective"] = self.objective.total("objective") / self.steps if self.steps else float("nan")
        for role in self.losses.names():
            row[f"{role}_loss"] = self.losses.mean(role)
        for role, weighting in ctx.superloss.items():
            if role in self.losses:
                row[f"{role}_tau"] = weighting.tau
                row[f"{role}_sigma_mean"] = weighting.last_sigma_mean
        row["seconds"] = ctx.budget.elapsed
        return row
