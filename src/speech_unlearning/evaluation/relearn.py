"""Relearning attack: does a little fine-tuning on part of Df bring the rest of Df back?

A model that only suppresses its answers on the forget set (for example by pushing one logit
down in its head) keeps the knowledge in its weights, so a few gradient steps on a small part
of Df restore accuracy on the rest of Df quickly. A model that never learned Df (the retrained
model) has to learn it, which is slower. The attack follows the targeted relearning attack of
Hu et al. (ICLR 2025), scaled to small speech classifiers.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..config import require
from ..training.data import ArrayData
from ..training.inference import accuracy, per_sample_loss
from ..training.optim import OPTIMIZERS, make_optimizer
from ..training.runtime import model_device


@dataclass
class RelearnConfig:
    """The attacker's budget; the defaults are the documented settings of the report."""

    fraction: float = field(default=0.2, metadata={"help": "share of Df the attacker fine-tunes on"})
    steps: int = field(default=20, metadata={"help": "optimiser steps of the attack"})
    lr: float = field(default=1e-3, metadata={"help": "attack learning rate"})
    optimizer: str = field(default="adam", metadata={"help": "adam | adamw | sgd"})
    batch_size: int = field(default=32, metadata={"help": "examples per attack step"})
    retain_per_forget: float = field(
        default=1.0,
        metadata={
            "help": "retain examples mixed in per attack example, so that the attack cannot succeed by "
            "predicting the forgotten class everywhere"
        },
    )
    eval_every: int = field(default=5, metadata={"help": "steps between accuracy checks on the held-out part of Df"})
    early_step: int = field(
        default=5,
        metadata={
            "help": "the early step reported beside the end of the schedule ('early'): how fast the first "
            "steps bring Df back, where the end says how much comes back at all (at most `steps`)"
        },
    )

    def __post_init__(self) -> None:
        require(0 < self.fraction < 1, "fraction", f"must be in (0, 1), got {self.fraction}")
        require(self.steps >= 1, "steps", f"must be at least 1, got {self.steps}")
        require(self.lr > 0, "lr", f"must be positive, got {self.lr}")
        require(
            self.optimizer in OPTIMIZERS,
            "optimizer",
            f"{self.optimizer!r} is not one of {', '.join(OPTIMIZERS.names())}",
        )
        require(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")
        require(self.retain_per_forget >= 0, "retain_per_forget", f"must be >= 0, got {self.retain_per_forget}")
        require(self.eval_every >= 1, "eval_every", f"must be at least 1, got {self.eval_every}")
        require(self.early_step >= 1, "early_step", f"must be at least 1, got {self.early_step}")

    @property
    def early_at(self) -> int:
        """The step 'early' is read at: `early_step`, or the last step of a shorter schedule."""
        return min(self.early_step, self.steps)

    def to_dict(self) -> dict:
        return asdict(self)


def split_forget_set(forget: ArrayData, fraction: float, rng: np.random.Generator) -> tuple[ArrayData, ArrayData]:
    """(attack part, held-out part) of `forget`: a seeded random `fraction` (at least one row) and the rest."""
    if len(forget) < 2:
        raise ValueError(f"the relearning attack needs at least 2 forget samples, got {len(forget)}")
    order = rng.permutation(len(forget))
    attack_size = min(len(forget) - 1, max(1, int(round(fraction * len(forget)))))
    return forget.subset(np.sort(order[:attack_size])), forget.subset(np.sort(order[attack_size:]))


def _attack_set(attack_forget: ArrayData, retain: ArrayData | None, config: RelearnConfig, rng) -> ArrayData:
    """The attacker's fine-tuning rows: the attack part of Df plus a seeded sample of Dr."""
    if retain is None or len(retain) == 0 or config.retain_per_forget == 0:
        return attack_forget
    if retain.features is not attack_forget.features:
        raise ValueError("relearn_attack: forget and retain must be views of the same feature array")
    count = min(len(retain), int(round(config.retain_per_forget * len(attack_forget))))
    retain_rows = retain.indices[rng.choice(len(retain), size=count, replace=False)]
    return ArrayData(attack_forget.features, attack_forget.labels, np.concatenate([attack_forget.indices, retain_rows]))


def _attack_batches(data: ArrayData, batch_size: int, generator: torch.Generator, device):
    """Endless reshuffled passes over `data` (fresh order every pass, no replayed batches)."""
    while True:
        yield from data.batches(batch_size, shuffle=True, generator=generator, device=device)


def relearn_attack(
    model: torch.nn.Module,
    forget: ArrayData,
    retain: ArrayData | None = None,
    config: RelearnConfig | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Fine-tune a copy of `model` on part of `forget`; measure accuracy on the rest.

    The forget set is split (seeded) into an attack part (`config.fraction`) and a held-out
    part. A deep copy of the model takes `config.steps` optimiser steps of mean cross-entropy on
    the attack part mixed with `retain_per_forget` retain rows each, on every parameter. The copy
    stays in eval mode throughout, so batch-norm statistics and dropout are frozen and only the
    gradient steps change it. `model` itself is never modified.

    Returns held-out Df accuracy `before` the attack, `early` (after `config.early_at` steps)
    and `after` (at the end of the schedule, `config.steps`), `gain` = after - before,
    `at_step_<k>` every `eval_every` steps (and at the early step), and the sizes
    `n_attack_forget`, `n_attack_retain`, `n_held_out`. Lower `early` / `after` = harder to
    relearn = more thoroughly forgotten; compare with the retrained model under the same attack.
    The two can disagree: a model can resist the first steps and still come back by the end.
    """
    config = config or RelearnConfig()
    rng = np.random.default_rng(seed)
    attack_forget, held_out = split_forget_set(forget, config.fraction, rng)
    attack_data = _attack_set(attack_forget, retain, config, rng)
    attacked = copy.deepcopy(model)
    attacked.eval()  # frozen normalisation statistics and dropout: see the docstring
    # The attacker tunes every weight, whatever a method or recipe froze, so that all models
    # face the same attack.
    attacked.requires_grad_(True)
    device = model_device(attacked)
    optimizer = make_optimizer(attacked.parameters(), config.optimizer, config.lr, weight_decay=0.0)
    batches = _attack_batches(attack_data, config.batch_size, torch.Generator().manual_seed(seed), device)
    result = {"before": accuracy(attacked, held_out)}
    for step in range(1, config.steps + 1):
        inputs, labels, _ = next(batches)
        optimizer.zero_grad(set_to_none=True)
        per_sample_loss(attacked(inputs), labels).mean().backward()
        optimizer.step()
        if step % config.eval_every == 0 or step in (config.early_at, config.steps):
            result[f"at_step_{step}"] = accuracy(attacked, held_out)
    result["early"] = result[f"at_step_{config.early_at}"]
    result["after"] = result[f"at_step_{config.steps}"]
    result["gain"] = result["after"] - result["before"]
    result["n_attack_forget"] = float(len(attack_forget))
    result["n_attack_retain"] = float(len(attack_data) - len(attack_forget))
    result["n_held_out"] = float(len(held_out))
    return result
