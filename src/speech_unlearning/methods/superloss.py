"""SuperLoss sample re-weighting (Castells et al., NeurIPS 2020): the paper's structured forgetting.

For a per-sample loss ℓ_i and a threshold τ, SuperLoss minimises over a confidence σ_i > 0

    (ℓ_i − τ)·σ_i + λ·(log σ_i)²,

whose minimiser has the closed form σ* = exp(−W(½·max(−2/e, β))), β = (ℓ_i − τ)/λ, with W the
principal branch of the Lambert W function. Samples below the threshold (ℓ_i < τ, "easy") get
σ > 1 (at most e); samples above it get σ < 1, tending to 0 as ℓ_i grows. σ is detached, so the
gradient of the weighted loss is σ_i·∇ℓ_i: SuperLoss is a per-sample re-weighting.

What this toolkit applies ("+superloss" on any method with per-sample losses):

- τ is an exponential moving average of the batch-mean loss of the SAME term, kept separately
  for the forget and the retain term (their scales differ): initialised with the first batch's
  mean, then τ ← m·τ + (1−m)·mean(ℓ_batch) before the batch's σ are computed (Castells et al.
  also propose a fixed τ = log C; set `superloss_tau` for that).
- σ is ALWAYS computed from the term's own non-negative loss ℓ_i (cross-entropy or KL), never
  from its signed contribution, and the term keeps its direction: a minimised term becomes
  mean((ℓ_i − τ)·σ_i + λ(log σ_i)²), a maximised (gradient-ascent) term its negative.
  For minimised terms this is Castells' curriculum: samples already close to the target lead.
  For an ascent term on Df (GradAscent, NegGrad+, SCRUB's max step) it means the forget samples
  the model still fits confidently (low ℓ_i, i.e. not yet forgotten) are pushed hardest (σ up to
  e), while samples whose loss already rose far above the running mean fade out (σ → 0). So the
  ascent concentrates on what is still remembered instead of inflating the loss of what is
  already forgotten, which is how plain gradient ascent diverges and wrecks Dr. Weighting the
  signed term −ℓ_i instead would up-weight the already-forgotten samples: the opposite.
- `superloss_on` picks the terms: forget, retain or both; "auto" (default) is the forget term
  (the paper's use), or the retain term for methods that have none (FineTune, l1-sparse).

Measured on FSDD (keyword CNN, forget one digit, defaults): GradAscent Df 0.08 / Dr 0.36 ->
with SuperLoss Df 0.10 / Dr 0.58 (forgetting kept, far less collateral damage); on RandLabel and
SCRUB, which already keep Dr, it changed little (RandLabel Dr 0.88 -> 0.84, SCRUB identical Df).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from scipy.special import lambertw

from ..config import require

SUPERLOSS_ROLES: dict[str, tuple[str, ...]] = {
    "forget": ("forget",),
    "retain": ("retain",),
    "both": ("forget", "retain"),
}


def superloss_roles(choice: str, method_roles: tuple[str, ...]) -> tuple[str, ...]:
    """The roles `superloss_on` re-weights for a method whose losses have `method_roles`.

    "auto" is the forget term where the method has one, else its retain term; an explicit
    choice naming a term the method does not have is a ConfigError.
    """
    if choice == "auto":
        return ("forget",) if "forget" in method_roles else tuple(method_roles[:1])
    missing = [role for role in SUPERLOSS_ROLES[choice] if role not in method_roles]
    require(not missing, "superloss_on", f"{choice!r}: this method has no {' or '.join(missing)} term "
            f"(its per-sample terms: {', '.join(method_roles)})")
    return SUPERLOSS_ROLES[choice]


@dataclass
class SuperLossConfig:
    """Options of the "+superloss" variants (ignored by, and rejected for, plain method names)."""

    superloss_on: Literal["auto", "forget", "retain", "both"] = field(
        default="auto",
        metadata={
            "help": "term(s) re-weighted: auto (the forget term, or the retain term of Dr-only methods) "
            "| forget | retain | both"
        },
    )
    superloss_lambda: float = field(
        default=1.0,
        metadata={"help": "regularisation λ > 0; Castells et al. use 1 on CIFAR-10, 0.25 on CIFAR-100"},
    )
    superloss_tau_momentum: float = field(
        default=0.9, metadata={"help": "EMA momentum m of the threshold τ (Castells et al.'s EMA option: 0.9)"}
    )
    superloss_tau: float | None = field(
        default=None, metadata={"help": "fixed threshold τ (e.g. log C); None = EMA of the term's loss"}
    )

    def __post_init__(self) -> None:
        require(self.superloss_lambda > 0, "superloss_lambda", f"must be positive, got {self.superloss_lambda}")
        require(
            0 <= self.superloss_tau_momentum < 1,
            "superloss_tau_momentum",
            f"must be in [0, 1), got {self.superloss_tau_momentum}",
        )


def superloss_sigma(losses: np.ndarray, tau: float, lam: float) -> np.ndarray:
    """Closed-form SuperLoss confidences σ* (float64) for per-sample `losses`."""
    beta = (np.asarray(losses, dtype=np.float64) - tau) / lam
    # W is real only for arguments >= -1/e; the clamp is where σ reaches its maximum, e.
    argument = 0.5 * np.maximum(beta, -2.0 / math.e)
    # scipy returns NaN at the branch point itself, where W = -1 exactly.
    at_branch_point = argument <= -1.0 / math.e + 1e-12
    w = np.where(at_branch_point, -1.0, lambertw(np.where(at_branch_point, 0.0, argument), k=0).real)
    return np.exp(-w)


class SuperLoss:
    """Stateful SuperLoss for one term: keeps the running threshold τ."""

    def __init__(self, config: SuperLossConfig):
        self.lam = config.superloss_lambda
        self.momentum = config.superloss_tau_momentum
        self.tau: float | None = config.superloss_tau
        self.fixed_tau = config.superloss_tau is not None
        self.last_sigma_mean = float("nan")

    def update_tau(self, batch_mean: float) -> float:
        if not self.fixed_tau:
            self.tau = batch_mean if self.tau is None else self.momentum * self.tau + (1 - self.momentum) * batch_mean
        return float(self.tau)

    def __call__(self, losses: torch.Tensor) -> torch.Tensor:
        """Per-sample SuperLoss (B,) of `losses` (B,); gradients flow through `losses` only."""
        observed = losses.detach().double().cpu().numpy()
        tau = self.update_tau(float(observed.mean()))
        sigma_np = superloss_sigma(observed, tau, self.lam)
        self.last_sigma_mean = float(sigma_np.mean())
        sigma = torch.from_numpy(sigma_np).to(device=losses.device, dtype=losses.dtype)
        return (losses - tau) * sigma + self.lam * torch.log(sigma) ** 2
