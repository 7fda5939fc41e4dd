"""Batched evaluation of a classifier on an `ArrayData` view: eval mode, no gradients.

`predict_logits` and `compute_embeddings` return NumPy arrays in row order; `evaluate` gives the
mean cross-entropy and accuracy in one pass (`accuracy` and `evaluate_loss` pick one of them).
`per_sample_loss` is the per-example cross-entropy that training and the unlearning methods reduce
themselves (so SuperLoss can weight examples before the mean).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import ArrayData
from .runtime import model_device


class Evaluation(NamedTuple):
    loss: float  # mean cross-entropy
    accuracy: float  # in [0, 1]


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy per example (B,), so callers (e.g. SuperLoss) can weight before reducing."""
    return F.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing)


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """model.eval() and torch.no_grad() inside the block; the previous mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _map_batches(model: nn.Module, data: ArrayData, batch_size: int, function, width: int) -> np.ndarray:
    """Concatenate `function(inputs)` (B, width) over `data` in order, as float32 NumPy."""
    device = model_device(model)
    with evaluation_mode(model):
        chunks = [function(inputs).float().cpu().numpy() for inputs, _, _ in data.batches(batch_size, device=device)]
    return np.concatenate(chunks) if chunks else np.zeros((0, width), dtype=np.float32)


def predict_logits(model: nn.Module, data: ArrayData, batch_size: int = 256) -> np.ndarray:
    """Logits (n, C) for the rows of `data`, in order."""
    return _map_batches(model, data, batch_size, model, getattr(model, "num_classes", 0))


def compute_embeddings(model: nn.Module, data: ArrayData, batch_size: int = 256) -> np.ndarray:
    """Penultimate embeddings `model.embed` (n, D) for the rows of `data`, in order."""
    return _map_batches(model, data, batch_size, model.embed, getattr(model, "embedding_dim", 0))


def evaluate(model: nn.Module, data: ArrayData, batch_size: int = 256) -> Evaluation:
    """Mean cross-entropy and accuracy on `data`, in one pass; both NaN for empty data."""
    if len(data) == 0:
        return Evaluation(float("nan"), float("nan"))
    device = model_device(model)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with evaluation_mode(model):
        for inputs, labels, _ in data.batches(batch_size, device=device):
            logits = model(inputs)  # (B, C)
            loss_sum += per_sample_loss(logits.float(), labels).sum()
            correct += (logits.argmax(dim=1) == labels).sum()
    return Evaluation(loss_sum.item() / len(data), correct.item() / len(data))


def accuracy(model: nn.Module, data: ArrayData, batch_size: int = 256) -> float:
    """Fraction of `data` classified correctly, in [0, 1]; NaN for empty data."""
    return evaluate(model, data, batch_size).accuracy


def evaluate_loss(model: nn.Module, data: ArrayData, batch_size: int = 256) -> float:
    """Mean cross-entropy on `data`; NaN for empty data."""
    return evaluate(model, data, batch_size).loss
