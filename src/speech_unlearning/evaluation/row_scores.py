"""Accuracy, per-example loss and the loss MIA of one model on rows the caller picks.

The metrics (`metrics.EvalContext`, the `accuracy` and `loss_mia` metrics) score fixed subsets:
Df, Dr and Dtest of one split. Verification of a deletion request needs the same quantities on
other rows: every forgotten group of a chain of requests, each against its own non-members, a
seeded sample of Dr. So the definitions live here, once, and both use them:

- `correct_predictions` and `example_losses`: what a model got right and its loss, per row,
  from its logits;
- `accuracy_of` and `mean_class_accuracy_of`: the fraction correct, and its macro average over classes;
- `matched_nonmembers`: the test rows a membership attack compares a forget set with;
- `loss_mia_or_none`: `mia.loss_mia`, or None when a group is too small for it;
- `RowScores`: all of these for one model on a fixed set of corpus rows, from one forward pass.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..data.corpus import Corpus
from ..training.data import ArrayData
from ..training.inference import per_sample_loss, predict_logits
from .mia import LOSS_MIA_FOLDS, MIAInputError, loss_mia


def correct_predictions(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) booleans from logits (n, C): prediction (arg max) == label."""
    return np.asarray(logits).argmax(axis=1) == np.asarray(labels)


def example_losses(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) float64 cross-entropy per row, the same definition the training loop minimises."""
    logits = torch.from_numpy(np.asarray(logits)).double()
    return per_sample_loss(logits, torch.from_numpy(np.asarray(labels, dtype=np.int64))).numpy()


def accuracy_of(correct: np.ndarray) -> float | None:
    """Fraction of `correct` that is True; None when empty."""
    return float(np.mean(correct)) if len(correct) else None


def mean_class_accuracy_of(correct: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean over the classes present in `labels` of each class's accuracy (macro average); None when empty."""
    if not len(correct):
        return None
    return float(np.mean([np.mean(correct[labels == label]) for label in np.unique(labels)]))


def matched_nonmembers(corpus: Corpus, test_rows: np.ndarray, labels: Sequence[int],
                       speakers: Sequence[str]) -> tuple[np.ndarray, str]:
    """(mask over `test_rows`, phrase): the non-members a membership attack compares a forget set with.

    Forgotten classes (`labels`): their test rows. Otherwise forgotten `speakers`: their test
    rows when there are at least two, else all test rows. Otherwise all test rows. Drawing them
    from Df's own population keeps "member or not" from being confounded with "forgotten class
    (or speaker) or not".
    """
    everything = np.ones(len(test_rows), dtype=bool)
    if len(labels):
        return np.isin(corpus.labels[test_rows], list(labels)), "test recordings of the forgotten class(es)"
    if len(speakers):
        mask = np.isin(corpus.speakers[test_rows], list(speakers))
        if mask.sum() >= 2:
            return mask, "test recordings of the forgotten speaker(s)"
        return everything, "all test recordings (the forgotten speaker(s) have fewer than 2 test recordings)"
    return everything, "all test recordings"


def loss_mia_or_none(member_losses: np.ndarray, nonmember_losses: np.ndarray, seed: int = 0,
                     max_folds: int = LOSS_MIA_FOLDS) -> dict[str, float] | None:
    """`mia.loss_mia` of members vs non-members; None when a group is too small to attack."""
    try:
        return loss_mia(member_losses, nonmember_losses, seed=seed, max_folds=max_folds)
    except MIAInputError:
        return None


class RowScores:
    """Correctness and per-example loss of one model on a fixed set of corpus rows (one forward pass),
    and the accuracies and loss MIA of any of those rows."""

    def __init__(self, model: nn.Module, features: np.ndarray, corpus: Corpus, rows: np.ndarray, batch_size: int = 256):
        self.rows = np.unique(np.asarray(rows, dtype=np.int64))
        logits = predict_logits(model, ArrayData(features, corpus.labels, self.rows), batch_size)  # (n, C)
        self.labels = corpus.labels[self.rows]
        self.correct = correct_predictions(logits, self.labels)
        self.losses = example_losses(logits, self.labels)
        self._attacks: dict[tuple[bytes, bytes, int, int], dict[str, float] | None] = {}  # the same groups recur

    def _at(self, positions: np.ndarray) -> np.ndarray:
        where = np.searchsorted(self.rows, positions)
        if len(positions) and (where.max() >= len(self.rows) or np.any(self.rows[where] != positions)):
            raise ValueError("RowScores: asked for rows that were not scored")
        return where

    def accuracy(self, positions: np.ndarray) -> float | None:
        """Fraction correct on `positions`; None when empty."""
        return accuracy_of(self.correct[self._at(positions)])

    def mean_class_accuracy(self, positions: np.ndarray) -> float | None:
        """Macro average over the classes present in `positions`; None when empty."""
        where = self._at(positions)
        return mean_class_accuracy_of(self.correct[where], self.labels[where])

    def loss_mia(self, members: np.ndarray, nonmembers: np.ndarray, seed: int = 0,
                 max_folds: int = LOSS_MIA_FOLDS) -> dict[str, float] | None:
        """Loss-MIA accuracy / AUC of the rows `members` vs `nonmembers`; None when a group is too small."""
        key = (np.asarray(members).tobytes(), np.asarray(nonmembers).tobytes(), seed, max_folds)
        if key not in self._attacks:
            self._attacks[key] = loss_mia_or_none(self.losses[self._at(members)], self.losses[self._at(nonmembers)],
                                                  seed, max_folds)
        return self._attacks[key]
