"""U-LiRA: a per-example likelihood-ratio attack on unlearning.

Reference: J. Hayes, I. Shumailov, E. Triantafillou, A. Khalifa, N. Papernot, "Inexact unlearning
needs more careful evaluations to avoid a false sense of privacy", 2024 (arXiv:2403.01218),
built on LiRA (Carlini et al., "Membership inference attacks from first principles", 2022).

The attacker's task: given a model and a forget example x, was x unlearned (the model trained
on x and then ran the unlearning method) or never trained on (a Retrain)? Population attacks
(the loss and SVC attacks) fit one threshold for every example; examples differ in how hard they
are, so a per-example attack sees much more.

For every example x, with s the logit-scaled confidence of the true class
(`per_example.logit_scaled_confidence`):
1. IN: s(x) under shadow models that trained with x and then unlearned x by the method under
   test; OUT: s(x) under shadow models that never trained on x (Retrains).
2. Fit one Gaussian to each. An example gets its own variance when its side has at least
   `ULiRAConfig.own_variance_from` shadows; below that, the pooled within-example variance of
   that side over all examples (LiRA's fixed-variance variant, which Carlini et al. found
   stronger with few shadow models).
3. Score a target model on x by the log-likelihood ratio log N(s; IN) - log N(s; OUT):
   positive = looks unlearned, negative = looks like a Retrain.
The attack is summarised over (target model, example) pairs: ROC-AUC, the balanced accuracy of
the likelihood-ratio decision (score > 0), and TPR at 1 % and 0.1 % FPR, the positives being
the unlearned targets. 0.5 (AUC, accuracy) = unlearning is indistinguishable from retraining.

Which pool provides IN and OUT:
- `ulira_attack(unlearned, retrained)`, the grid's entry point: IN = the method's unlearned
  models (each trained with Df, then unlearned Df: other seeds of the unlearning and/or of the
  Original), OUT = the Retrain ensemble. Leave-one-seed-out: the models of one seed are scored
  with Gaussians fitted to the other seeds' models, so no target is in its own shadow pool.
  This is U-LiRA with one shared forget set.
- `ulira_scores(in_shadows, out_shadows, targets)`: any pools, e.g. shadow Originals trained
  on random halves of the training data, each unlearning part of its half. NaN marks a shadow
  that does not count for an example (x was not in its forget set, or it trained on x and kept
  it). Using raw Originals (not unlearned) as IN instead asks whether the unlearned model still
  looks trained on x; that is a plain LiRA against the Original, weaker than U-LiRA, and not
  what the verdict should rest on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import require
from .mia import MIAInputError
from .per_example import seed_groups
from .roc import balanced_accuracy, roc_auc, tpr_at_fpr

LOW_FPRS: dict[str, float] = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0_1pct_fpr": 0.001}


@dataclass
class ULiRAConfig:
    """How the per-example Gaussians are fitted."""

    own_variance_from: int = field(
        default=32,
        metadata={"help": "shadows per side an example needs to get its own variance; fewer = pooled variance"},
    )
    min_std: float = field(
        default=1e-3, metadata={"help": "floor on every fitted standard deviation (logit units): constant pools score"}
    )

    def __post_init__(self) -> None:
        require(self.own_variance_from >= 2, "own_variance_from", f"must be at least 2, got {self.own_variance_from}")
        require(self.min_std > 0, "min_std", f"must be positive, got {self.min_std}")


@dataclass(frozen=True)
class GaussianFit:
    """One Gaussian per example; mean NaN where no shadow counts for the example."""

    mean: np.ndarray  # (n,)
    std: np.ndarray  # (n,)
    count: np.ndarray  # (n,) shadows behind each fit
    own_variance: np.ndarray  # (n,) bool: the example's own variance (else the pooled one)


def fit_gaussians(shadows: np.ndarray, config: ULiRAConfig | None = None) -> GaussianFit:
    """Per-example Gaussian fits of (S, n) shadow statistics; NaN entries are left out.

    Raises MIAInputError when no example has two shadows (no variance can be estimated).
    """
    config = config or ULiRAConfig()
    shadows = np.asarray(shadows, dtype=np.float64)
    if shadows.ndim != 2:
        raise ValueError(f"shadow statistics must be (S, n), got {shadows.shape}")
    present = ~np.isnan(shadows)
    count = present.sum(axis=0)
    filled = np.where(present, shadows, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=0) / count  # NaN where count == 0
        squares = np.where(present, (shadows - mean) ** 2, 0.0).sum(axis=0)  # (n,)
        own_variance = squares / (count - 1)
    spread = count >= 2
    if not spread.any():
        raise MIAInputError("U-LiRA needs at least 2 shadow models on each side for some example")
    pooled_variance = squares[spread].sum() / (count[spread] - 1).sum()
    own = count >= config.own_variance_from
    variance = np.where(own, own_variance, pooled_variance)
    std = np.maximum(np.sqrt(variance), config.min_std)
    return GaussianFit(mean, std, count, own)


def _log_density(values: np.ndarray, fit: GaussianFit) -> np.ndarray:
    """log N(values; mean, std) per example, broadcast over leading axes; the 2*pi term cancels."""
    return -0.5 * ((values - fit.mean) / fit.std) ** 2 - np.log(fit.std)


def log_likelihood_ratio(targets: np.ndarray, in_fit: GaussianFit, out_fit: GaussianFit) -> np.ndarray:
    """(T, n) log N(s; IN) - log N(s; OUT) of (T, n) target statistics; > 0 = looks unlearned."""
    targets = np.asarray(targets, dtype=np.float64)
    return _log_density(targets, in_fit) - _log_density(targets, out_fit)


def ulira_scores(
    in_shadows: np.ndarray, out_shadows: np.ndarray, targets: np.ndarray, config: ULiRAConfig | None = None
) -> np.ndarray:
    """(T, n) U-LiRA scores of (T, n) target statistics against (S_in, n) IN and (S_out, n) OUT
    shadow statistics (NaN = this shadow does not count for this example). NaN scores mark
    examples with no IN or no OUT shadow."""
    in_fit, out_fit = fit_gaussians(in_shadows, config), fit_gaussians(out_shadows, config)
    if np.shape(targets)[-1] != len(in_fit.mean) or len(in_fit.mean) != len(out_fit.mean):
        raise ValueError("targets and shadows must cover the same examples")
    return log_likelihood_ratio(targets, in_fit, out_fit)


def attack_summary(scores: np.ndarray, is_unlearned: np.ndarray) -> dict[str, float]:
    """AUC, balanced accuracy of `scores > 0`, TPR at low FPRs over the finite scores; counts."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    is_unlearned = np.asarray(is_unlearned, dtype=bool).reshape(-1)
    kept = np.isfinite(scores)
    scores, is_unlearned = scores[kept], is_unlearned[kept]
    summary = {
        "auc": roc_auc(scores, is_unlearned),
        "accuracy": balanced_accuracy(scores > 0, is_unlearned),
        **{key: tpr_at_fpr(scores, is_unlearned, fpr) for key, fpr in LOW_FPRS.items()},
    }
    summary.update(n_positive=float(is_unlearned.sum()), n_negative=float((~is_unlearned).sum()))
    return summary


def ulira_attack(
    unlearned: np.ndarray,
    retrained: np.ndarray,
    config: ULiRAConfig | None = None,
    unlearned_groups: np.ndarray | None = None,
    retrained_groups: np.ndarray | None = None,
) -> dict[str, float]:
    """U-LiRA of (K_u, n) unlearned vs (K_r, n) Retrain statistics on the forget examples.

    Leave-one-seed-out: the models of each group (`*_groups`, default their position, so model
    i of each pool forms group i) are scored against Gaussians fitted to the models of all other
    groups (IN = those unlearned models, OUT = those Retrains). Holding out an unlearned model
    and a Retrain together scores both with the same fits, so identical pools give AUC 0.5 on
    average; holding out one model alone biases the AUC below 0.5. Returns `attack_summary`
    over the (K_u + K_r) * n pairs, positives = unlearned: auc, accuracy, tpr_at_1pct_fpr,
    tpr_at_0_1pct_fpr, n_positive, n_negative (the FPR resolution is 1 / n_negative).
    Every fold needs at least 2 models of each pool outside it.
    """
    unlearned = np.asarray(unlearned, dtype=np.float64)
    retrained = np.asarray(retrained, dtype=np.float64)
    if unlearned.ndim != 2 or retrained.ndim != 2 or unlearned.shape[1] != retrained.shape[1]:
        raise ValueError(f"expected (K, n) arrays over the same examples, got {unlearned.shape} and {retrained.shape}")
    unlearned_groups = seed_groups(unlearned_groups, len(unlearned), "unlearned")
    retrained_groups = seed_groups(retrained_groups, len(retrained), "retrained")
    unlearned_scores, retrained_scores = np.full(unlearned.shape, np.nan), np.full(retrained.shape, np.nan)
    for group in np.unique(np.concatenate([unlearned_groups, retrained_groups])):
        held_unlearned, held_retrained = unlearned_groups == group, retrained_groups == group
        if min((~held_unlearned).sum(), (~held_retrained).sum()) < 2:
            raise MIAInputError(
                f"U-LiRA needs at least 2 models of each pool outside every seed group; seed {group} leaves "
                f"{(~held_unlearned).sum()} unlearned and {(~held_retrained).sum()} Retrain"
            )
        targets = np.concatenate([unlearned[held_unlearned], retrained[held_retrained]])
        scores = ulira_scores(unlearned[~held_unlearned], retrained[~held_retrained], targets, config)
        unlearned_scores[held_unlearned] = scores[: held_unlearned.sum()]
        retrained_scores[held_retrained] = scores[held_unlearned.sum() :]
    is_unlearned = np.r_[np.ones(len(unlearned), dtype=bool), np.zeros(len(retrained), dtype=bool)]
    return attack_summary(
        np.concatenate([unlearned_scores, retrained_scores]), np.repeat(is_unlearned[:, None], unlearned.shape[1], 1)
    )
