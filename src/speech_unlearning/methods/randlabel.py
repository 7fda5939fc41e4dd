"""RandLabel: fine-tune on Df with random labels, interleaved with passes over Dr (Golatkar et al.
2020; the SalUn repository's "RL").

Variant implemented (the SalUn repository's small-dataset one): every epoch is one shuffled pass
over Df in which each example gets a label drawn uniformly from ALL classes, fresh for every
batch and epoch (it may equal the true label), followed by one shuffled pass over Dr with the
true labels. (MU-Bench's (y+1) mod C relabelling is a different, deterministic method.)
Defaults: the SalUn repository's 10 epochs and batch 256, the same as our SalUn so that the two
differ only by the saliency mask; AdamW at lr 1e-3 (`AdamWMethodConfig`, base.py) where the
reference has SGD lr 0.013, momentum 0.9, weight decay 5e-4. On FSDD (forget one digit): Df 0.00,
Dr 0.78 -> 0.88 (with the reference's SGD: Df 0.00, Dr 0.64).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..training.inference import per_sample_loss
from .base import AdamWMethodConfig, Batch, Method, Phase, Term, UnlearnContext, minimise, register_method
from .finetune import retain_cross_entropy
from .streams import forget_pass, retain_pass


@dataclass
class RandLabelConfig(AdamWMethodConfig):
    epochs: int = field(default=10, metadata={"help": "epochs of (Df random-label pass, Dr pass); SalUn repo: 10"})
    batch_size: int = field(default=256, metadata={"help": "SalUn repo: 256"})


@register_method("randlabel")
class RandLabel(Method):
    summary = "Df with uniformly random labels, then a Dr pass, every epoch"
    objective_reads = ()  # Df under random labels, never its true ones
    config_class = RandLabelConfig

    def epoch_phases(self, ctx: UnlearnContext, epoch: int) -> list[Phase]:
        size = ctx.config.batch_size
        return [forget_pass(ctx, size, self.forget_loss), retain_pass(ctx, size, retain_cross_entropy)]

    @staticmethod
    def forget_loss(ctx: UnlearnContext, batch: Batch) -> list[Term]:
        labels = ctx.random_labels(len(batch))
        return [minimise(per_sample_loss(ctx.logits(batch.inputs), labels), "forget")]
