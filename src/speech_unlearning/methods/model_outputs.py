"""What a method reads off a model without training it (eval mode, no gradients).

- `sorted_losses`: a model's per-sample losses over a whole dataset, ascending, e.g. to compare
  how it treats Df with how it treats held-out data (Calibrated's quantile targets);
- `EmbeddingCache`: a frozen body's embeddings, each recording's computed once, for methods
  that train only the head (Calibrated's class step).
"""

from __future__ import annotations

import numpy as np
import torch

from ..training.data import ArrayData
from ..training.inference import evaluation_mode, per_sample_loss, predict_logits
from .base import Batch


def sorted_losses(model: torch.nn.Module, data: ArrayData, device: torch.device) -> torch.Tensor:
    """`model`'s per-sample losses on `data` (eval mode, no gradients), ascending, on `device`."""
    logits = torch.from_numpy(predict_logits(model, data)).to(device)
    labels = torch.from_numpy(np.asarray(data.labels[data.indices], dtype=np.int64)).to(device)
    return torch.sort(per_sample_loss(logits, labels)).values


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
