"""Per-sample losses shared by several methods (all return (B,) so SuperLoss can weight them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def softened_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher ‖ student) per sample (B,) between temperature-softened softmax outputs.

    Σ_c q_c·(log q_c − log p_c) with q = softmax(teacher/T), p = softmax(student/T): the
    quantity `F.kl_div(log_softmax(student/T), softmax(teacher/T))` sums. The teacher side is
    detached. Knowledge-distillation methods multiply by T² themselves where their reference does.
    """
    log_student = F.log_softmax(student_logits / temperature, dim=1)  # (B, C)
    log_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)  # (B, C)
    return (log_teacher.exp() * (log_teacher - log_student)).sum(dim=1)  # (B,)


def l1_norm(model: nn.Module) -> torch.Tensor:
    """Σ|θ| over the trainable parameters (a scalar that carries gradients)."""
    return sum(p.abs().sum() for p in model.parameters() if p.requires_grad)
