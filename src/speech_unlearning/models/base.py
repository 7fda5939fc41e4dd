"""The interface every model in the registry implements.

A `SpeechClassifier` maps a batch of inputs (log-mel (B, n_mels, T) or waveform (B, samples),
as its `input_kind` says) to logits (B, num_classes) through `embed` (B, D) and a linear `head`.
Evaluation (representation probe) and some methods (SSD, SalUn) rely on this split.
"""

from __future__ import annotations

import torch
from torch import nn


class SpeechClassifier(nn.Module):
    """Base class: subclasses implement `embed`; `forward` applies the linear head."""

    input_kind: str = "logmel"  # "logmel" | "waveform"; must match the FeatureSpec kind

    def __init__(self, embedding_dim: int, num_classes: int):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.head = nn.Linear(embedding_dim, num_classes)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """Penultimate embeddings (B, D)."""
        raise NotImplementedError

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(inputs))  # (B, C)
