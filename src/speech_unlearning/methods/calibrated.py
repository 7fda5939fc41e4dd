"""Calibrated forgetting (ours): make Df look exactly as unseen data looks to the model, no more.

A retrained model is not wrong on Df; it treats Df as it treats any recording it never saw.
Baselines miss that target from both sides: ascent methods (GradAscent, SCRUB's max step)
overshoot and damage Dr, relabelling methods (RandLabel, SalUn) barely move Df. This method
aims at the target itself, and needs no retrained model to know it:

- **Labels still served** (sample and speaker unlearning): the loss distribution that unseen
  data has under the original model is measured once on the validation split (held-out data,
  never Dtest). In every forget batch the per-sample losses are ranked and each is pulled,
  with a smooth-L1 penalty, to the held-out loss of the same quantile: memorised recordings
  (loss near 0) are pushed up until they sit where unseen ones sit, and none is pushed past it.
  That is the "structured", sample-by-sample curriculum the paper asks for, with its threshold
  taken from data rather than from a running mean.
- **Labels no longer served** (class unlearning; a speaker in speaker ID): a model retrained
  without a class never predicts it and spreads its mass over the classes that look alike. The
  target for such a recording is the original model's softened output with the forgotten
  classes removed and the rest renormalised; the loss is the KL to that target. When every
  forget label is dropped, only the linear head learns (the embeddings are computed frozen, in
  eval mode): removing a class is a change of the decision layer, and moving the whole network
  for it cost the remaining classes 10-15 points of accuracy on the validation split. Of the
  head, only the dropped classes' rows learn: the others keep the original's values, so each
  recording goes to the class the original ranks next, and the remaining classes' boundaries
  do not move. Training every row instead (Adam moves each weight by about the lr per step,
  whatever its gradient) cost up to 7 points of Dr accuracy; over the eight class cells of the
  quick and fsdd grids the mean validation Avg. Gap was 1.03 pp with every row, 0.79 with the
  dropped rows only.
- **Dr** keeps the original's behaviour by distillation (T²-scaled KL, as SCRUB's min step,
  to the original's output with any dropped class masked out) plus cross-entropy, on one retain
  batch paired with every forget batch.

Every pass goes over Df once (with as many retain batches), so the cost scales with |Df|, not
|D|: one epoch is one pass when the network pulls, `head_passes` passes over cached embeddings
when only the head learns (then Dr is one pass's worth of rows, drawn once). When every forget
label is still served, Df is scored whole, in eval mode, before each pass; once its mean pull is
below `pull_tolerance` times the held-out median loss, Df already looks as unseen data looks and
the run ends (possibly before its first step, returning the original). The original's pull
starts at 0.02-0.15 of that median on the embedded corpus's keyword model, which barely
memorises, and at 0.64-0.96 on its speaker model, which does; 8 passes of pulling in the first
case cost 15-21 % of a retraining and moved nothing beyond noise.
Defaults (chosen on the validation split of the quick and fsdd grids; see the notebook
docs/research/2026-12-05-benchmark-notebook.md):
AdamW (weight decay 1e-4) for the whole network at lr 5e-4 for one epoch, 32 retain rows per
forget batch. One epoch is what fits under 5 % of a retraining's time in every speaker-ID sample
cell (two epochs took up to 7.3 %); over those 15 cells (five seeds × 1/5/10 %) the one-epoch lr
that scored best on validation was 4.5e-4 to 6e-4 (per-run Avg. Gap 4.4-4.5 pp, gap of the means
1.7-2.0 pp), against 5.8 / 3.7 at 3e-4 (too little pull) and 9.1 / 8.7 at 1e-3, which knocks Dr
down before Df moves. Each step's gradient is clipped to norm 1: the pull's gradients are
larger, so in effect every step is normalised (clipping at 0.3 scores identically); on the same
cells this lowered the validation gap in all 9 cells of several steps (4.50 → 4.13 pp per run,
1.70 → 1.51 of the means); the 6 single-step cells and the 20 class cells scored the same. For
the head alone: lr 3e-2, 8 passes, dropped rows only. T = 2, retain weights 1 (KL) and 0.5 (CE),
Huber β = 1, pull tolerance 0.2 (between the two ranges above, from the unlearning logs of the
quick grid, which see no test data).
Two options are off by default, because neither helped on validation against both references
(the notebook, "Restricting the pull, or repairing after it"): `saliency_ratio` lets the pull
move only the weights most salient for Df, as SalUn does, and `repair_share` follows each
pulling pass with steps on Dr alone.
A third, `heldout_warp`, is for speaker requests whose validation speakers all appear in training
(FSDD): there the validation split shows how the model treats new takes of voices it knows, not a
voice it never heard, so the Original's Df already sits at its quantiles and nothing is pulled.
With it, the target is the Original's losses on the validation recordings with their vocal tract
warped (`data.features.warp_vocal_tract`), voices no training recording has. On FSDD keyword
speaker requests it halves the gap to Retrain, but the pull then takes 6-9 % of a retraining's time
and costs 4 points of Dr and 6 of the other speakers' test accuracy, so it is off
(the notebook, "An unseen-voice reference for speaker requests").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ConfigError, require
from ..data.features import warp_vocal_tract
from ..training.data import ArrayData
from ..training.inference import evaluation_mode, per_sample_loss, predict_logits
from .base import AdamWMethodConfig, Batch, Method, PairedBatch, Phase, Term, UnlearnContext, minimise, register_method
from .losses import softened_kl
from .saliency import FrozenCoordinates, freeze_all_but_top, salient_weights
from .streams import paired_pass, random_retain_subset, retain_sample_pass

# A dropped class's teacher logit: finite, so 0·log 0 terms stay 0 rather than NaN, and far
# enough below any real logit that its softmax probability is exactly 0 in float32.
MASKED_LOGIT = -1e4


class EmbeddingCache:
    """Embeddings of a frozen body by corpus position, filled as recordings are first seen."""

    def __init__(self, size: int, device: torch.device):
        self.filled = torch.zeros(size, dtype=torch.bool, device=device)
        self.values: torch.Tensor | None = None

    def lookup(self, batch: Batch, model: torch.nn.Module) -> torch.Tensor:
        """`model.embed` (eval mode, no gradients) of the batch's rows, computed for new rows only."""
        rows = torch.as_tensor(batch.indices, device=self.filled.device)
        missing = ~self.filled[rows]
        if missing.any():
            with evaluation_mode(model):
                fresh = model.embed(batch.inputs[missing])
            if self.values is None:
                self.values = torch.zeros(len(self.filled), fresh.shape[1], dtype=fresh.dtype, device=fresh.device)
            self.values[rows[missing]] = fresh
            self.filled[rows[missing]] = True
        return self.values[rows]


def sorted_losses(model: torch.nn.Module, data: ArrayData, device: torch.device) -> torch.Tensor:
    """`model`'s per-sample losses on `data` (eval mode, no gradients), ascending, on `device`."""
    logits = torch.from_numpy(predict_logits(model, data)).to(device)
    labels = torch.from_numpy(np.asarray(data.labels[data.indices], dtype=np.int64)).to(device)
    return torch.sort(per_sample_loss(logits, labels)).values


def warped_view(data: ArrayData, factor: float) -> ArrayData:
    """`data`'s recordings, their vocal tract warped by `factor` (`warp_vocal_tract`), labels kept."""
    recordings = warp_vocal_tract(np.asarray(data.features[data.indices]), factor)
    return ArrayData(recordings, data.labels[data.indices], np.arange(len(data)))


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
        default=1.0,
        metadata={"help": "clip each step's gradient norm to this; the pull's norms exceed it, so every step moves "
                          "the network alike. None = no clipping"},
    )
    temperature: float = field(default=2.0, metadata={"help": "softening T of the Dr distillation (SCRUB's 2)"})
    retain_kl_weight: float = field(default=1.0, metadata={"help": "weight of T²·KL(original ‖ model) on Dr"})
    retain_ce_weight: float = field(default=0.5, metadata={"help": "weight of cross-entropy on Dr"})
    huber_beta: float = field(default=1.0, metadata={"help": "smooth-L1 β of the loss-to-quantile pull (nats)"})
    head_rows: Literal["dropped", "all"] = field(
        default="dropped",
        metadata={"help": "when only the head learns: train only the dropped classes' rows (the others stay "
                          "the original's) or every row"},
    )
    saliency_ratio: float = field(
        default=1.0,
        metadata={"help": "share of the weights the pull may move, the most salient for Df as in SalUn; the rest "
                          "stay the original's. 1 = every weight"},
    )
    saliency_from: Literal["forget_pass", "first_step"] = field(
        default="forget_pass",
        metadata={"help": "rank weights by the gradient of Df's loss over one extra pass over Df (SalUn's way), or "
                          "by the first pulling step's own gradient (no extra pass)"},
    )
    repair_share: float = field(
        default=0.0,
        metadata={"help": "after each pulling pass, this share of its steps again on Dr alone (distillation + CE) "
                          "to mend what the pull cost Dr; 0 = none"},
    )
    heldout_warp: float = field(
        default=0.0,
        metadata={"help": "for speaker requests whose validation speakers are all training speakers: calibrate "
                          "against voices the model never heard, the validation recordings with their vocal tract "
                          "warped by 1 + w and 1 - w (frequency axis); 0 = as recorded"},
    )
    pull_tolerance: float = field(
        default=0.2,
        metadata={"help": "stop once an epoch's mean pull is below this fraction of the held-out median loss; "
                          "0 = run every epoch"},
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
        require(0 < self.saliency_ratio <= 1, "saliency_ratio", f"must be in (0, 1], got {self.saliency_ratio}")
        require(self.repair_share >= 0, "repair_share", f"must be >= 0, got {self.repair_share}")
        require(0 <= self.heldout_warp < 1, "heldout_warp", f"must be in [0, 1), got {self.heldout_warp}")


@register_method("calibrated")
class Calibrated(Method):
    summary = "pull Df's per-sample losses to the held-out loss quantiles (masked KL for dropped classes); distil Dr"
    # Df's losses pulled to the quantiles of held-out losses: both sides of a loss attack.
    objective_reads = ("forget_loss", "heldout_loss")
    config_class = CalibratedConfig

    def setup(self, ctx: UnlearnContext) -> None:
        retained = np.unique(ctx.retain.labels[ctx.retain.indices])
        dropped = np.setdiff1d(np.arange(ctx.num_classes), retained)
        self.dropped = torch.zeros(ctx.num_classes, dtype=torch.bool, device=ctx.device)
        self.dropped[torch.from_numpy(dropped).to(ctx.device)] = True
        forget_labels = torch.from_numpy(ctx.forget.labels[ctx.forget.indices]).to(ctx.device)
        self.head_only = bool(self.dropped[forget_labels].all())
        self.pull_only = not bool(self.dropped[forget_labels].any())  # the forget loss is the pull alone
        self.heldout_median = None  # the held-out losses are the pull's target, needed only when it runs
        if not self.head_only:
            if ctx.validation is None or len(ctx.validation) == 0:
                raise ConfigError("method calibrated: needs held-out validation data to calibrate against")
            self.heldout_losses = self.sorted_heldout_losses(ctx)
            self.heldout_median = float(self.heldout_losses.median())
        self.frozen = None  # weights held at the original's values (FrozenCoordinates)
        self.retain_rows = None  # Dr rows every pass draws from (None: all of Dr)
        masked_pull = not self.head_only and ctx.config.saliency_ratio < 1
        self.mask_at_first_step = masked_pull and ctx.config.saliency_from == "first_step"
        if masked_pull and not self.mask_at_first_step:
            self.frozen = salient_weights(ctx, ctx.config.forget_batch_size, ctx.config.saliency_ratio)
        if self.head_only:  # only the head receives gradients, so only it moves
            for group in ctx.optimizer.param_groups:
                group["lr"] = ctx.config.head_lr
            if ctx.config.head_rows == "dropped":  # a row of the head is a class: only the dropped ones move
                self.frozen = FrozenCoordinates(
                    [(p, self.dropped.view(-1, *[1] * (p.dim() - 1)).expand_as(p)) for p in ctx.model.head.parameters()]
                )
            self.embedding_caches = {True: EmbeddingCache(len(ctx.forget.features), ctx.device),
                                     False: EmbeddingCache(len(ctx.retain.features), ctx.device)}
            self.retain_rows = self.retain_subset(ctx)
        ctx.log.append({"phase": "calibrate", "dropped_classes": dropped.tolist(), "head_only": self.head_only,
                        "heldout_median_nats": self.heldout_median})  # fmt: skip

    @staticmethod
    def retain_subset(ctx: UnlearnContext) -> ArrayData:
        """One pass's worth of Dr rows, drawn once: when only the head learns, every pass pairs Df
        with these (their embeddings cached), so Dr costs one pass of embedding, not all of Dr."""
        cfg = ctx.config
        rows_per_pass = math.ceil(len(ctx.forget) / cfg.forget_batch_size) * cfg.batch_size
        return random_retain_subset(ctx, rows_per_pass)

    def before_step(self, ctx: UnlearnContext) -> None:
        """Frozen weights (retained classes' head rows, or non-salient weights) get no gradient."""
        if self.mask_at_first_step and self.frozen is None:  # the first step's gradient ranks the weights
            gradients = {name: p.grad for name, p in ctx.trainable_parameters() if p.grad is not None}
            self.frozen = freeze_all_but_top(ctx, gradients, ctx.config.saliency_ratio)
        if self.frozen is not None:
            self.frozen.mask_gradients()

    def after_step(self, ctx: UnlearnContext) -> None:
        """Undo weight decay on the frozen weights, so they stay the original's exactly."""
        if self.frozen is not None:
            self.frozen.restore(ctx.optimizer)

    def outputs(self, ctx: UnlearnContext, batch: Batch, with_teacher: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(working logits, original logits with dropped classes masked, or None) for `batch`.

        When only the head learns, the body is the original's, frozen and in eval mode (batch-norm
        statistics untouched), so its embeddings serve both heads and never change: each
        recording's embedding is computed once and reused in every later epoch.
        """
        if self.head_only:
            embeddings = self.frozen_embeddings(ctx, batch)
            with torch.no_grad():
                teacher = ctx.original.head(embeddings) if with_teacher else None
            logits = ctx.model.head(embeddings)
        else:
            logits = ctx.logits(batch.inputs)
            teacher = ctx.teacher_logits(batch.inputs) if with_teacher else None
        # What a model retrained without the dropped classes would predict, as far as the
        # original can tell: no mass on a class it never saw.
        return logits, None if teacher is None else teacher.masked_fill(self.dropped, MASKED_LOGIT)

    def frozen_embeddings(self, ctx: UnlearnContext, batch: Batch) -> torch.Tensor:
        """The frozen body's embeddings (B, D) of the batch's recordings, each computed once."""
        cache = self.embedding_caches[bool(batch.is_forget[0])]  # Df and Dr may index different arrays
        return cache.lookup(batch, ctx.model)

    @staticmethod
    def sorted_heldout_losses(ctx: UnlearnContext) -> torch.Tensor:
        """The original model's per-sample losses on the validation split, ascending (warped if asked)."""
        warp = ctx.config.heldout_warp
        if warp == 0:
            return sorted_losses(ctx.original, ctx.validation, ctx.device)
        # Every other recording gets a shorter vocal tract (1 + w), the rest a longer one (1 - w):
        # one pass over the split, and a target that favours neither direction.
        shorter = ctx.validation.subset(np.arange(0, len(ctx.validation), 2))
        longer = ctx.validation.subset(np.arange(1, len(ctx.validation), 2))
        voices = [warped_view(shorter, 1 + warp), warped_view(longer, 1 - warp)]
        losses = [sorted_losses(ctx.original, voice, ctx.device) for voice in voices if len(voice)]
        return torch.sort(torch.cat(losses)).values

    def epoch_plan(self, ctx: UnlearnContext, epoch: int) -> list[Phase]:
        cfg = ctx.config
        if self.pull_reached(ctx, epoch):
            return []
        one_pass = paired_pass(ctx, cfg.forget_batch_size, cfg.batch_size, self.paired_loss, over="forget",
                               retain_data=self.retain_rows)
        if self.head_only:
            return [one_pass] * cfg.head_passes
        repair_steps = int(one_pass.num_batches * cfg.repair_share)
        if repair_steps == 0:
            return [one_pass]
        return [one_pass, retain_sample_pass(ctx, repair_steps, cfg.batch_size, self.repair_loss, name="repair")]

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
        """Mean smooth-L1 distance of Df's losses, ranked, to the held-out losses of the same rank.

        The model is scored in eval mode on all of Df at once, as the evaluation will see it: a
        training batch's statistics, and matching 32 losses to quantiles, both add noise.
        """
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

    def repair_loss(self, ctx: UnlearnContext, batch: Batch) -> list[Term]:
        return [self.retain_term(ctx, batch)]

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
