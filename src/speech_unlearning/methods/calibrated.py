"""Calibrated forgetting (ours): make Df look exactly as unseen data looks to the model, no more.

A retrained model treats Df as any recording it never saw: ascent methods overshoot that target,
relabelling methods barely move Df. This method aims at the target itself.
- Labels still served (sample requests; a speaker in KWS): each forget loss, ranked in its batch,
  is pulled (smooth-L1) to the original's validation loss at the same quantile. Df is scored whole
  before each pass; once its mean pull is below `pull_tolerance` × the held-out median loss, the
  run ends (possibly before its first step, returning the original).
- Labels no longer served (class requests; a speaker in speaker ID): only the head's rows of the
  dropped classes learn, on cached frozen embeddings, towards the original's output with those
  classes masked out, so each recording goes to the class the original ranks next.
- Dr: T²-scaled distillation plus CE, one Dr batch per Df batch, so the cost scales with |Df|.
Defaults were chosen on validation data only; the figures, and the options not kept, are in
docs/research/2026-12-05-calibrated-options-not-kept.md and the benchmark notebook beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ConfigError, require
from ..training.data import ArrayData
from ..training.inference import per_sample_loss
from .base import AdamWMethodConfig, Batch, PairedBatch, Phase, Term, UnlearnContext, minimise, register_method
from .losses import softened_kl
from .model_outputs import EmbeddingCache, sorted_losses
from .saliency import FrozenWeightsMethod, rows_fixed_but
from .streams import paired_pass, random_retain_subset

# A dropped class's teacher logit: finite, so 0·log 0 terms stay 0 rather than NaN, and far
# enough below any real logit that its softmax probability is exactly 0 in float32.
MASKED_LOGIT = -1e4


@dataclass
class CalibratedConfig(AdamWMethodConfig):
    lr: float = field(default=5e-4, metadata={"help": "AdamW lr of the whole network (labels still served)"})
    head_lr: float = field(default=3e-2, metadata={"help": "AdamW lr of the head when only dropped labels are forgotten"})
    epochs: int = field(default=1, metadata={"help": "epochs; each is one pass over Df, paired with as many Dr batches"})
    head_passes: int = field(
        default=8, metadata={"help": "passes over Df in each epoch when only the head learns (embeddings are cached)"}
    )
    batch_size: int = field(default=32, metadata={"help": "Dr examples paired with each forget batch"})
    forget_batch_size: int = field(default=32, metadata={"help": "forget examples per step"})
    max_grad_norm: float | None = field(
        default=1.0, metadata={"help": "clip each step's gradient norm (the pull's norms exceed it); None = off"}
    )
    temperature: float = field(default=2.0, metadata={"help": "softening T of the Dr distillation (SCRUB's 2)"})
    retain_kl_weight: float = field(default=1.0, metadata={"help": "weight of T²·KL(original ‖ model) on Dr"})
    retain_ce_weight: float = field(default=0.5, metadata={"help": "weight of cross-entropy on Dr"})
    huber_beta: float = field(default=1.0, metadata={"help": "smooth-L1 β of the loss-to-quantile pull (nats)"})
    head_rows: Literal["dropped", "all"] = field(
        default="dropped", metadata={"help": "when only the head learns: train the dropped classes' rows, or every row"}
    )
    pull_tolerance: float = field(
        default=0.2, metadata={"help": "stop once Df's mean pull < this × the held-out median loss; 0 = never stop"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.head_passes >= 1, "head_passes", f"must be at least 1, got {self.head_passes}")
        require(self.forget_batch_size >= 1, "forget_batch_size", f"must be at least 1, got {self.forget_batch_size}")
        require(self.temperature > 0, "temperature", f"must be positive, got {self.temperature}")
        require(self.retain_kl_weight >= 0, "retain_kl_weight", f"must be >= 0, got {self.retain_kl_weight}")
        require(self.retain_ce_weight >= 0, "retain_ce_weight", f"must be >= 0, got {self.retain_ce_weight}")
        require(self.head_lr > 0, "head_lr", f"must be positive, got {self.head_lr}")
        require(self.huber_beta > 0, "huber_beta", f"must be positive, got {self.huber_beta}")
        require(self.pull_tolerance >= 0, "pull_tolerance", f"must be >= 0, got {self.pull_tolerance}")


@register_method("calibrated")
class Calibrated(FrozenWeightsMethod):
    summary = "pull Df's per-sample losses to the held-out loss quantiles (masked KL for dropped classes); distil Dr"
    # Df's losses pulled to the quantiles of held-out losses: both sides of a loss attack.
    objective_reads = ("forget_loss", "heldout_loss")
    config_class = CalibratedConfig

    retain_rows: ArrayData | None = None  # the Dr rows every pass draws from (None: all of Dr)
    heldout_median: float | None = None  # the pull's scale, measured only when the pull runs

    def setup(self, ctx: UnlearnContext) -> None:
        retained = np.unique(ctx.retain.labels[ctx.retain.indices])
        dropped = np.setdiff1d(np.arange(ctx.num_classes), retained)
        self.dropped = torch.zeros(ctx.num_classes, dtype=torch.bool, device=ctx.device)
        self.dropped[torch.from_numpy(dropped).to(ctx.device)] = True
        forget_labels = torch.from_numpy(ctx.forget.labels[ctx.forget.indices]).to(ctx.device)
        self.head_only = bool(self.dropped[forget_labels].all())
        self.pull_only = not bool(self.dropped[forget_labels].any())  # the forget loss is the pull alone
        if self.head_only:
            self.setup_head_step(ctx)
        else:
            self.setup_pull(ctx)
        ctx.log.append({"phase": "calibrate", "dropped_classes": dropped.tolist(), "head_only": self.head_only,
                        "heldout_median_nats": self.heldout_median})  # fmt: skip

    def setup_pull(self, ctx: UnlearnContext) -> None:
        """The pull's target: the original's per-sample losses on held-out data, ascending."""
        if ctx.validation is None or len(ctx.validation) == 0:
            raise ConfigError("method calibrated: needs held-out validation data to calibrate against")
        self.heldout_losses = sorted_losses(ctx.original, ctx.validation, ctx.device)
        self.heldout_median = float(self.heldout_losses.median())

    def setup_head_step(self, ctx: UnlearnContext) -> None:
        """Only the head learns, on the frozen body's cached embeddings. Every pass pairs Df with the
        same Dr rows, one pass's worth drawn once, so Dr costs one pass of embedding, not all of Dr."""
        cfg = ctx.config
        for group in ctx.optimizer.param_groups:
            group["lr"] = cfg.head_lr
        if cfg.head_rows == "dropped":  # a row of the head is a class: only the dropped ones move
            self.frozen = rows_fixed_but(ctx.model.head.parameters(), self.dropped)
        self.embedding_caches = {True: EmbeddingCache(len(ctx.forget.features), ctx.device),
                                 False: EmbeddingCache(len(ctx.retain.features), ctx.device)}
        rows_per_pass = math.ceil(len(ctx.forget) / cfg.forget_batch_size) * cfg.batch_size
        self.retain_rows = random_retain_subset(ctx, rows_per_pass)

    def outputs(self, ctx: UnlearnContext, batch: Batch, with_teacher: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(working logits, original logits with dropped classes masked, or None) for `batch`. When only
        the head learns, the body is the original's, frozen and in eval mode (batch-norm statistics
        untouched): its embeddings serve both heads and never change, so each is computed once."""
        if self.head_only:
            cache = self.embedding_caches[bool(batch.is_forget[0])]  # Df and Dr may index different arrays
            embeddings = cache.lookup(batch, ctx.model)
            with torch.no_grad():
                teacher = ctx.original.head(embeddings) if with_teacher else None
            logits = ctx.model.head(embeddings)
        else:
            logits = ctx.logits(batch.inputs)
            teacher = ctx.teacher_logits(batch.inputs) if with_teacher else None
        # What a model retrained without the dropped classes would predict, as far as the
        # original can tell: no mass on a class it never saw.
        return logits, None if teacher is None else teacher.masked_fill(self.dropped, MASKED_LOGIT)

    def epoch_phases(self, ctx: UnlearnContext, epoch: int) -> list[Phase]:
        cfg = ctx.config
        if self.pull_reached(ctx, epoch):
            return []
        one_pass = paired_pass(ctx, cfg.forget_batch_size, cfg.batch_size, self.paired_loss, over="forget",
                               retain_data=self.retain_rows)
        return [one_pass] * cfg.head_passes if self.head_only else [one_pass]

    def pull_reached(self, ctx: UnlearnContext, epoch: int) -> bool:
        """True when the whole of Df already sits at its held-out quantiles (every check is logged)."""
        if not self.pull_only or ctx.config.pull_tolerance == 0:
            return False
        if ctx.log[-1].get("phase") == "converged":
            return True
        pull = self.forget_pull(ctx)
        reached = pull < ctx.config.pull_tolerance * self.heldout_median
        ctx.log.append({"phase": "converged" if reached else "pull", "epoch": epoch, "pull_nats": pull})
        return reached

    def forget_pull(self, ctx: UnlearnContext) -> float:
        """Mean smooth-L1 distance of Df's losses, ranked, to the held-out losses of the same rank,
        with all of Df scored at once in eval mode, as the evaluation will see it (a training batch's
        statistics, and matching 32 losses to quantiles, both add noise)."""
        ranked = sorted_losses(ctx.model, ctx.forget, ctx.device)
        targets = self.heldout_at_ranks(torch.arange(len(ranked), device=ranked.device))
        return float(F.smooth_l1_loss(ranked, targets, beta=ctx.config.huber_beta))

    def heldout_at_ranks(self, ranks: torch.Tensor) -> torch.Tensor:
        """The held-out loss at the quantile of each rank (0 = lowest) among len(ranks) losses."""
        levels = (ranks.float() + 0.5) / len(ranks)
        positions = (levels * len(self.heldout_losses)).long().clamp(max=len(self.heldout_losses) - 1)
        return self.heldout_losses[positions]

    def paired_loss(self, ctx: UnlearnContext, batch: PairedBatch) -> list[Term]:
        return self.forget_terms(ctx, batch.forget) + [self.retain_term(ctx, batch.retain)]

    def forget_terms(self, ctx: UnlearnContext, batch: Batch) -> list[Term]:
        labels = batch.labels
        dropped = self.dropped[labels]  # (B,) rows whose label is no longer served
        served = ~dropped
        logits, teacher = self.outputs(ctx, batch, with_teacher=bool(dropped.any()))
        terms = []
        if served.any():
            terms.append(minimise(self.quantile_pull(ctx, logits[served], labels[served]), "forget"))
        if dropped.any():
            target = F.softmax(teacher[dropped], dim=1)  # (b, C)
            terms.append(minimise(-(target * F.log_softmax(logits[dropped], dim=1)).sum(1), "forget"))
        return terms

    def quantile_pull(self, ctx: UnlearnContext, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-sample smooth-L1 distance (b,) of each loss to the held-out loss of its rank."""
        losses = per_sample_loss(logits, labels)
        ranks = torch.argsort(torch.argsort(losses.detach()))  # 0 = lowest loss in the batch
        return F.smooth_l1_loss(losses, self.heldout_at_ranks(ranks), beta=ctx.config.huber_beta, reduction="none")

    def retain_term(self, ctx: UnlearnContext, batch: Batch) -> Term:
        cfg = ctx.config
        logits, teacher = self.outputs(ctx, batch, with_teacher=True)
        kl = softened_kl(logits, teacher, cfg.temperature) * cfg.temperature**2
        losses = cfg.retain_kl_weight * kl + cfg.retain_ce_weight * per_sample_loss(logits, batch.labels)
        return minimise(losses, "retain")
