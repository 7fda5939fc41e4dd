"""Batches straight from the cached feature arrays: no per-step audio decoding.

`ArrayData` is a view of some rows of a (memory-mapped) feature array with their labels. It is
what the training loop, every unlearning method and every metric consume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch


@dataclass(frozen=True)
class ArrayData:
    """Rows `indices` of `features` (N, ...) with `labels` (N,), both indexed by corpus position."""

    features: np.ndarray
    labels: np.ndarray
    indices: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "indices", np.asarray(self.indices, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def subset(self, positions: np.ndarray) -> "ArrayData":
        """The rows at `positions` (positions within this view, not corpus indices)."""
        return ArrayData(self.features, self.labels, self.indices[np.asarray(positions, dtype=np.int64)])

    def with_labels(self, labels: np.ndarray) -> "ArrayData":
        """Same rows, labels replaced by `labels` (N,) indexed by corpus position."""
        return ArrayData(self.features, labels, self.indices)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
        """Yield (inputs, labels, corpus_indices) batches; order is seeded by `generator`."""
        order = self.indices
        if shuffle:
            order = order[torch.randperm(len(order), generator=generator).numpy()]
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            # memmap fancy indexing is fastest on sorted rows; keep the batch order by un-sorting.
            sorter = np.argsort(rows, kind="stable")
            block = np.empty((len(rows),) + self.features.shape[1:], dtype=np.float32)
            block[sorter] = self.features[rows[sorter]]
            inputs = torch.from_numpy(block).to(device)
            labels = torch.from_numpy(np.asarray(self.labels[rows], dtype=np.int64)).to(device)
            yield inputs, labels, rows
