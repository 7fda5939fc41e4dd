"""What an unlearning method is, and the pieces every method shares.

The paper's unified objective (eq. 1) is L = L_forget(Df) + α·L_retain(Dr). A method here is a
small class registered in `METHODS` that holds only its part of that objective:

- `config_class`: a dataclass of its hyper-parameters, each default documented with its
  provenance (`metadata={"help": ...}`);
- `epoch_phases(ctx, epoch)`: which batch streams one epoch visits, as `Phase`s (a stream from
  `streams.py` plus the loss function that turns one batch into `Term`s);
- optional hooks: `setup` (e.g. SalUn's mask, Bad-Teaching's incompetent teacher),
  `before_step` / `after_step` around every optimiser step, or `run` to replace the
  optimisation loop altogether (Retrain, SSD).

A loss function returns per-sample losses tagged with their role (forget / retain) and their
direction (minimise / maximise), never a reduced scalar: the engine reduces them, which is where
the "+superloss" option re-weights samples without any method knowing about it. The engine itself
(copying the original, the optimiser, the budget, the timing) is `engine.unlearn`, which imports
this module (never the other way round).

Defaults. Each method file states where every default comes from. One deviation is shared
(`AdamWMethodConfig`): the reference repositories fine-tune SGD-trained CIFAR ResNets with SGD at
lr ~0.01, below those models' training lr. Our originals are trained with AdamW (see
training/recipes.py), and there the reference's SGD settings disrupt the model: fine-tuning the
FSDD keyword CNN on Dr with SGD lr 0.01 (momentum 0.9) took Dr accuracy from 0.78 to 0.39, while
AdamW at lr 1e-3 (a third of the CPU recipe's peak lr 3e-3) took it to 0.92. Methods that train
on Dr therefore default to AdamW, lr 1e-3, weight decay 1e-4 (the recipe's). These values suit
the small CPU models; transformer backbones trained at lr 3e-5 need a lower lr (`--set lr=...`).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Literal

import numpy as np
import torch
from torch import nn

from ..config import describe_fields, require, to_dict
from ..registry import Registry
from ..training.data import ArrayData
from ..training.inference import evaluation_mode
from ..training.optim import OPTIMIZERS
from ..training.runtime import Budget

if TYPE_CHECKING:
    from .superloss import SuperLoss, SuperLossConfig

SUPERLOSS_SUFFIX = "+superloss"

Role = Literal["forget", "retain", "penalty"]


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass
class MethodConfig:
    """Optimisation settings shared by every gradient-based method; subclasses change defaults
    and add their own fields (e.g. the trade-off weight α of eq. 1 where a method has one)."""

    lr: float = field(default=1e-3, metadata={"help": "learning rate"})
    epochs: int = field(default=5, metadata={"help": "passes of the method's per-epoch phases"})
    batch_size: int = field(default=64, metadata={"help": "examples per step"})
    optimizer: str = field(default="sgd", metadata={"help": "sgd | adam | adamw"})
    weight_decay: float = field(default=5e-4, metadata={"help": "weight decay"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum (ignored by adam/adamw)"})
    max_grad_norm: float | None = field(
        default=None, metadata={"help": "clip the gradient norm to this value; None = no clipping"}
    )

    def __post_init__(self) -> None:
        require(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        require(self.epochs >= 1, "epochs", f"must be at least 1, got {self.epochs}")
        require(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        require(
            self.optimizer in OPTIMIZERS,
            "optimizer",
            f"{self.optimizer!r} is not one of {', '.join(OPTIMIZERS.names())}",
        )
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(0 <= self.momentum < 1, "momentum", f"must be in [0, 1), got {self.momentum}")
        require(
            self.max_grad_norm is None or self.max_grad_norm > 0,
            "max_grad_norm",
            f"must be positive or None, got {self.max_grad_norm}",
        )


@dataclass
class AdamWMethodConfig(MethodConfig):
    """MethodConfig with the optimiser of our training recipes (module docstring, "Defaults")."""

    lr: float = field(default=1e-3, metadata={"help": "AdamW lr: a third of the CPU recipe's peak (references: SGD)"})
    optimizer: str = field(default="adamw", metadata={"help": "the recipes' optimiser (references: sgd)"})
    weight_decay: float = field(default=1e-4, metadata={"help": "the recipes' value (references: 5e-4)"})


# --------------------------------------------------------------------------------------------
# Batches and loss terms


@dataclass(frozen=True)
class Batch:
    """One batch on the model's device; `is_forget` (B,) flags rows of Df (mixed streams)."""

    inputs: torch.Tensor
    labels: torch.Tensor
    indices: np.ndarray  # corpus positions (B,)
    is_forget: torch.Tensor  # (B,) bool

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class PairedBatch:
    """A forget batch and a retain batch taken together (NegGrad+)."""

    forget: Batch
    retain: Batch


@dataclass(frozen=True)
class Term:
    """Per-sample losses (B,) of one part of the objective.

    The engine adds `sign * weight * sum(losses) / denominator` to the step's loss, where
    `sign` is +1 to minimise and -1 to maximise, and `denominator` defaults to the number of
    losses (a mean). With "+superloss" on this term's role, `losses` are first replaced by their
    SuperLoss-weighted values (see superloss.py). `losses` stay non-negative task losses
    (cross-entropy, KL) whatever the sign: the sign says what the method does with them.
    """

    losses: torch.Tensor
    role: Role
    sign: float = 1.0
    weight: float = 1.0
    denominator: int | None = None


def minimise(losses: torch.Tensor, role: Role, weight: float = 1.0, denominator: int | None = None) -> Term:
    return Term(losses, role, 1.0, weight, denominator)


def maximise(losses: torch.Tensor, role: Role, weight: float = 1.0, denominator: int | None = None) -> Term:
    return Term(losses, role, -1.0, weight, denominator)


def penalty(value: torch.Tensor, weight: float = 1.0) -> Term:
    """A scalar regulariser (e.g. an L1 norm), added as is; SuperLoss never touches it."""
    return Term(value.reshape(1), "penalty", 1.0, weight, 1)


LossFunction = Callable[["UnlearnContext", Any], list[Term]]
BatchSource = Callable[["UnlearnContext"], Iterator[Any]]


@dataclass(frozen=True)
class Phase:
    """One stream of batches in an epoch, and the loss each batch is trained on."""

    name: str  # shown in the log, e.g. "forget", "retain", "max", "min"
    batches: BatchSource
    num_batches: int
    loss: LossFunction


# --------------------------------------------------------------------------------------------
# The state one unlearning call threads through a method


@dataclass
class UnlearnContext:
    """Everything a method may read or update during one `unlearn` call.

    `model` is the working copy being unlearned; `original` is the caller's model, which
    methods may only evaluate (`teacher_logits`), never train or mutate.
    """

    model: nn.Module
    original: nn.Module
    forget: ArrayData
    retain: ArrayData
    validation: ArrayData | None
    config: Any  # the method's config dataclass
    train_config: Any  # training.config.TrainConfig of the original model, or None
    device: torch.device
    generator: torch.Generator  # seeded; all shuffles and random draws of the call use it
    budget: Budget
    seed: int
    num_classes: int
    progress: bool = False
    superloss: dict[str, "SuperLoss"] = field(default_factory=dict)  # role -> weighting state
    optimizer: torch.optim.Optimizer | None = None
    steps: int = 0
    # Optimiser steps of the method's schedule run to its end (None: unknown), so that a run cut by
    # its budget can be reported as "capped at `steps` of `planned_steps`".
    planned_steps: int | None = None
    log: list[dict] = field(default_factory=list)
    budget_exhausted: bool = False
    diverged: bool = False
    # Builds the Original recipe's batch augmenter for a recipe (seeded by that recipe's seed), so that
    # Retrain augments as the Original did; None where the caller has no corpus to build it from.
    augmenter: Callable[[Any], Any] | None = None
    # Retrain: its retrain.RetrainRun (the recipe it trained with and fit's TrainResult).
    training: Any = None

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The working model's logits (B, C), safe for a batch of one in training mode."""
        if inputs.shape[0] == 1 and self.model.training:
            # Batch norm cannot normalise one example with batch statistics: use running ones.
            with _batch_norm_eval(self.model):
                return self.model(inputs)
        return self.model(inputs)

    def teacher_logits(self, inputs: torch.Tensor, teacher: nn.Module | None = None) -> torch.Tensor:
        """Logits (B, C) of `teacher` (default: the original model) in eval mode, no gradients."""
        teacher = self.original if teacher is None else teacher
        with evaluation_mode(teacher):  # restores the teacher's mode afterwards
            return teacher(inputs)

    def random_labels(self, count: int) -> torch.Tensor:
        """`count` labels drawn uniformly from all classes (the true one included), seeded."""
        return torch.randint(0, self.num_classes, (count,), generator=self.generator).to(self.device)

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(name, p) for name, p in self.model.named_parameters() if p.requires_grad]


def reinitialised_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` with every layer re-initialised by its own `reset_parameters`.

    Same architecture, random weights drawn from torch's global generator (seeded by the
    engine). Parameters that belong to no layer with `reset_parameters` keep their values.
    """
    fresh = copy.deepcopy(model)
    with torch.no_grad():
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return fresh


def random_model_like(original: nn.Module) -> nn.Module:
    """An untrained model of the original's architecture, on the original's device.

    Registry models are rebuilt from their `build_args` (`models.registry.rebuild_model`);
    any other model is re-initialised layer by layer (`reinitialised_copy`).
    """
    build_args = getattr(original, "build_args", None)
    if not build_args:
        return reinitialised_copy(original)
    from ..models.registry import rebuild_model

    return rebuild_model(build_args).to(next(original.parameters()).device)


def starting_model_like(original: nn.Module) -> nn.Module:
    """The model Retrain trains: the original's recorded starting point where it has one, else random.

    An imported model (`speech-unlearn import`) was usually fine-tuned from pretrained weights, so
    random weights would not be what training started from: it provides `starting_point()`
    (the pretrained encoder with a fresh head, or re-initialised weights, as recorded at import).
    A registry model with a pretrained backbone (`build_args["pretrained_from"]`) starts from those
    pretrained weights with a fresh head (`models.registry.rebuild_starting_model`), so the Retrain
    of a fine-tuned Whisper / wav2vec 2.0 / HuBERT is not trained from a random encoder. Every
    other model starts from `random_model_like`.
    """
    start = getattr(original, "starting_point", None)
    if callable(start):
        return start()
    build_args = getattr(original, "build_args", None)
    if build_args and build_args.get("pretrained_from"):
        from ..models.registry import rebuild_starting_model

        return rebuild_starting_model(build_args).to(next(original.parameters()).device)
    return random_model_like(original)


class _batch_norm_eval:
    """Context manager: batch-norm layers of `model` in eval mode inside the block."""

    def __init__(self, model: nn.Module):
        self.layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]

    def __enter__(self) -> None:
        for layer in self.layers:
            layer.eval()

    def __exit__(self, *exc) -> None:
        for layer in self.layers:
            layer.train()


# --------------------------------------------------------------------------------------------
# Methods and their registry

# What a method's objective may read that an evaluation also decides on. An attack that decides on
# a quantity the method optimises judges the method on its own target (a method that pulls Df's
# losses to unseen data's passes a loss attack by construction), so reports name, per method, the
# attacks whose quantities its objective reads (evaluation metrics declare theirs, `Metric.reads`).
OBJECTIVE_QUANTITIES: dict[str, str] = {
    "forget_loss": "Df's per-example cross-entropy on its true labels (so its true-class confidence)",
    "heldout_loss": "per-example losses of recordings the model never trained on (a loss attack's non-members)",
}


class Method:
    """Base class of every registered method; one instance serves one `unlearn` call.

    Subclasses set `summary` (one line for `speech-unlearn methods`), `config_class` and
    `loss_roles` (the roles of the per-sample `Term`s their losses return), and implement
    `epoch_phases`; methods that do not optimise an objective batch by batch set `loss_roles = ()`
    and override `run`. Every registered class states `objective_reads` itself (not inherited):
    the OBJECTIVE_QUANTITIES its objective reads, () for none.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    config_class: ClassVar[type] = MethodConfig
    loss_roles: ClassVar[tuple[str, ...]] = ("forget", "retain")  # empty: "+superloss" is not offered
    objective_reads: ClassVar[tuple[str, ...]]  # no default: each method says what its objective reads

    def check(self, config: Any, forget: ArrayData, retain: ArrayData, train_config: Any) -> None:
        """Reject a request this method cannot serve, before any compute (raise ConfigError)."""

    def setup(self, ctx: UnlearnContext) -> None:
        """Called once after the working copy and optimiser exist, inside the timed region."""

    def epoch_phases(self, ctx: UnlearnContext, epoch: int) -> list[Phase]:
        """The phases of 0-based `epoch`, in order."""
        raise NotImplementedError

    def planned_steps(self, ctx: UnlearnContext, first_phases: list[Phase]) -> int:
        """Optimiser steps of the whole schedule: every epoch like the first (methods whose later
        epochs differ say so). A schedule that may end early by itself (calibrated) counts its maximum."""
        return ctx.config.epochs * sum(phase.num_batches for phase in first_phases)

    def before_step(self, ctx: UnlearnContext) -> None:
        """Called after backward, before the optimiser step (e.g. to mask gradients)."""

    def after_step(self, ctx: UnlearnContext) -> None:
        """Called after every optimiser step (e.g. to restore frozen weights)."""

    def run(self, ctx: UnlearnContext) -> None:
        """Replace the engine's optimisation loop; only methods that set it up call this."""
        raise NotImplementedError


METHODS: Registry[type[Method]] = Registry("method")


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: register a Method subclass under `name` (and set its `name`)."""

    def add(cls: type[Method]) -> type[Method]:
        # Stated by the class itself: a subclass (SalUn of RandLabel) may optimise something else.
        if "objective_reads" not in vars(cls):
            raise TypeError(f"method {name!r}: set objective_reads (the OBJECTIVE_QUANTITIES its objective reads)")
        unknown = sorted(set(cls.objective_reads) - OBJECTIVE_QUANTITIES.keys())
        if unknown:
            raise TypeError(f"method {name!r}: unknown objective_reads {unknown}; known: {sorted(OBJECTIVE_QUANTITIES)}")
        cls.name = name
        return METHODS.register(name)(cls)

    return add


def method_names(with_superloss: bool = False) -> list[str]:
    """Registered method names; with `with_superloss`, also every valid "+superloss" variant."""
    names = METHODS.names()
    if with_superloss:
        names = names + [n + SUPERLOSS_SUFFIX for n in names if METHODS.get(n).loss_roles]
    return names


def split_method_name(name: str) -> tuple[type[Method], bool]:
    """"scrub+superloss" -> (the SCRUB class, True); unknown names list the valid ones."""
    base, superloss = (name[: -len(SUPERLOSS_SUFFIX)], True) if name.endswith(SUPERLOSS_SUFFIX) else (name, False)
    method = METHODS.get(base)
    if superloss and not method.loss_roles:
        variants = ", ".join(n + SUPERLOSS_SUFFIX for n in METHODS.names() if METHODS.get(n).loss_roles)
        raise ValueError(f"method {base!r} has no per-sample training loss, so {name!r} does not exist; "
                         f"SuperLoss variants: {variants}")
    return method, superloss


def config_defaults(config_class: type) -> dict[str, Any]:
    return {name: default for name, _, default, _ in describe_fields(config_class)}


def describe_methods() -> list[dict[str, Any]]:
    """For `speech-unlearn methods`: name, one-line summary, provenance notes and defaults."""
    from .superloss import SuperLossConfig

    rows = []
    for name in METHODS.names():
        method = METHODS.get(name)
        rows.append(
            {
                "name": name,
                "summary": method.summary,
                "superloss": bool(method.loss_roles),
                "objective_reads": list(method.objective_reads),
                "defaults": config_defaults(method.config_class),
                "help": {n: h for n, _, _, h in describe_fields(method.config_class)},
            }
        )
    rows.append(
        {
            "name": f"<method>{SUPERLOSS_SUFFIX}",
            "summary": "SuperLoss per-sample re-weighting (the paper's structured forgetting) on any method above "
            "marked superloss=yes",
            "superloss": True,
            "objective_reads": [],
            "defaults": config_defaults(SuperLossConfig),
            "help": {n: h for n, _, _, h in describe_fields(SuperLossConfig)},
        }
    )
    return rows


# --------------------------------------------------------------------------------------------
# The result


@dataclass
class UnlearnResult:
    """What an `unlearn` call returns. `seconds` times the unlearning alone (copy included)."""

    model: nn.Module
    seconds: float
    steps: int
    log: list[dict]
    budget_exhausted: bool
    config: Any  # the method's config dataclass, defaults filled in
    name: str  # the full method name, e.g. "scrub+superloss"
    superloss: "SuperLossConfig | None" = None
    seed: int = 0
    diverged: bool = False  # a non-finite loss stopped the run (weights are the last finite ones)
    planned_steps: int | None = None  # the schedule's steps had no budget stopped it (None: unknown)
    training: Any = None  # Retrain: its retrain.RetrainRun (recipe and TrainResult)

    def config_dict(self) -> dict[str, Any]:
        """Method and SuperLoss settings in one dict: exactly what `--set` accepts for `name`."""
        values = to_dict(self.config)
        if self.superloss is not None:
            values.update(to_dict(self.superloss))
        return values

    def to_metadata(self) -> dict[str, Any]:
        """JSON-friendly summary for checkpoint metadata and reports (no model, no log)."""
        return {
            "method": self.name,
            "config": self.config_dict(),
            "seed": self.seed,
            "seconds": self.seconds,
            "steps": self.steps,
            "planned_steps": self.planned_steps,
            "budget_exhausted": self.budget_exhausted,
            "diverged": self.diverged,
        }


def dataclass_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]

