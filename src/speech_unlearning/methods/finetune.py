"""FineTune: continue training on Dr only and let catastrophic forgetting erase Df (Warnecke et al.
2023; the baseline of Jia et al. 2023 and the SalUn repository, "FT").

Defaults: 10 epochs, as the SalUn repository's FT; batch 64, as our training recipes; AdamW at
lr 1e-3 (`AdamWMethodConfig`, base.py) where the reference has SGD lr 0.01, momentum 0.9,
weight decay 5e-4. On FSDD (forget one digit) this gave Df 0.00, Dr 0.78 -> 0.92.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..training.inference import per_sample_loss
from .base import AdamWMethodConfig, Batch, Method, Phase, Term, UnlearnContext, minimise, register_method
from .streams import retain_pass


@dataclass
class FineTuneConfig(AdamWMethodConfig):
    epochs: int = field(default=10, metadata={"help": "passes over Dr (SalUn repo FT: 10)"})


def retain_cross_entropy(ctx: UnlearnContext, batch: Batch) -> list[Term]:
    """CE on a retain batch: the L_retain of every method that fine-tunes on Dr."""
    return [minimise(per_sample_loss(ctx.logits(batch.inputs), batch.labels), "retain")]


@register_method("finetune")
class FineTune(Method):
    summary = "fine-tune on Dr only (forgetting by interference)"
    objective_reads = ()  # Dr only
    config_class = FineTuneConfig
    loss_roles = ("retain",)

    def epoch_phases(self, ctx: UnlearnContext, epoch: int) -> list[Phase]:
        return [retain_pass(ctx, ctx.config.batch_size, retain_cross_entropy)]
