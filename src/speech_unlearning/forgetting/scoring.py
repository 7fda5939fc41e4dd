"""What verification measures: the groups of training rows a request forgot (`ForgetGroup`, each
with the test rows its membership attack compares them with), one model's correctness and loss
on the rows the checks need (`RowScores`, one forward pass), the test populations the targets
are measured on, and the metrics of one model role over all of them."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..data.corpus import Corpus
from ..data.splits import UnlearningSplit
from ..training.data import ArrayData
from ..training.inference import per_sample_loss, predict_logits
from .acceptance import AcceptanceThresholds

RETAIN_SAMPLE = 500  # Dr rows scored for the Dr accuracy (seeded sample; Dr can be the whole corpus)


@dataclass(frozen=True)
class ForgetGroup:
    """Training rows forgotten together (one kind of one request), and how to check them."""

    name: str  # e.g. "keyword 3", "speaker jackson", "3 listed file(s)"
    origin: str  # "this request" or "earlier request <id>"
    positions: np.ndarray  # sorted corpus positions
    labels: tuple[int, ...]  # forgotten classes; empty when the labels stay in use
    mia_rows: np.ndarray  # test rows the loss MIA compares Df with
    mia_rows_text: str
    speakers: tuple[str, ...] = ()  # the forgotten speakers of a speaker request
    thresholds: AcceptanceThresholds | None = None  # an earlier request's own; None: today's

    @property
    def class_like(self) -> bool:
        return bool(self.labels)


def _group_name(corpus: Corpus, split: UnlearningSplit) -> str:
    if split.kind == "class":
        word = "keyword" if corpus.task == "kws" else "class"
        return f"{word}(s) {', '.join(split.params['classes'])}"
    if split.kind == "speaker":
        speakers = split.params.get("speakers") or sorted(set(corpus.speakers[split.forget_indices(corpus)].tolist()))
        return f"speaker(s) {', '.join(map(str, speakers))}"
    if split.kind == "sample":
        return f"random sample of {len(split.forget_ids)} recording(s)"
    return f"{len(split.forget_ids)} listed recording(s)"


def forget_group(corpus: Corpus, split: UnlearningSplit, origin: str,
                 thresholds: AcceptanceThresholds | None = None) -> ForgetGroup:
    """The group of `split`, with the loss-MIA non-members drawn from the same population as Df.

    Forgotten classes: their test recordings. A speaker split: that speaker's test recordings
    when there are at least two, else all test recordings. Otherwise: all test recordings.
    """
    positions = split.forget_indices(corpus)
    labels = tuple(split.forgotten_labels(corpus))
    test = corpus.indices("test")
    mia_rows, text = test, "all test recordings"
    speakers = tuple(sorted(set(corpus.speakers[positions].tolist()))) if split.kind == "speaker" else ()
    if labels:
        mia_rows, text = test[np.isin(corpus.labels[test], labels)], "test recordings of the forgotten class(es)"
    elif split.kind == "speaker":
        mine = test[np.isin(corpus.speakers[test], speakers)]
        if len(mine) >= 2:
            mia_rows, text = mine, "test recordings of the forgotten speaker(s)"
    return ForgetGroup(_group_name(corpus, split), origin, positions, labels, mia_rows, text, speakers, thresholds)


class RowScores:
    """Correctness and per-sample loss of one model on a fixed set of corpus rows (one forward pass)."""

    def __init__(self, model: nn.Module, features: np.ndarray, corpus: Corpus, rows: np.ndarray, batch_size: int = 256):
        self.rows = np.unique(np.asarray(rows, dtype=np.int64))
        logits = predict_logits(model, ArrayData(features, corpus.labels, self.rows), batch_size)  # (n, C)
        labels = corpus.labels[self.rows]
        self.correct = logits.argmax(axis=1) == labels
        self.losses = per_sample_loss(torch.from_numpy(logits).double(), torch.from_numpy(labels)).numpy()
        self.labels = labels
        self._attacks: dict[tuple[bytes, bytes, int], dict[str, float] | None] = {}  # the same groups recur

    def _at(self, positions: np.ndarray) -> np.ndarray:
        where = np.searchsorted(self.rows, positions)
        if len(positions) and (where.max() >= len(self.rows) or np.any(self.rows[where] != positions)):
            raise ValueError("RowScores: asked for rows that were not scored")
        return where

    def accuracy(self, positions: np.ndarray) -> float | None:
        """Fraction correct on `positions`; None when empty."""
        return float(np.mean(self.correct[self._at(positions)])) if len(positions) else None

    def mean_class_accuracy(self, positions: np.ndarray) -> float | None:
        """Mean over the classes present in `positions` of each class's accuracy (macro average)."""
        where = self._at(positions)
        if not len(where):
            return None
        per_class = [np.mean(self.correct[where][self.labels[where] == label]) for label in np.unique(self.labels[where])]
        return float(np.mean(per_class))

    def membership(self, members: np.ndarray, nonmembers: np.ndarray, seed: int) -> dict[str, float] | None:
        """Loss-MIA accuracy / AUC of members vs non-members; None when a group is too small."""
        from ..evaluation.mia import MIAInputError, loss_mia  # imported late: the CLI help should not load sklearn

        key = (np.asarray(members).tobytes(), np.asarray(nonmembers).tobytes(), seed)
        if key not in self._attacks:
            try:
                self._attacks[key] = loss_mia(self.losses[self._at(members)], self.losses[self._at(nonmembers)], seed=seed)
            except MIAInputError:
                self._attacks[key] = None
        return self._attacks[key]


def _sample_rows(rows: np.ndarray, count: int, seed: int) -> np.ndarray:
    """At most `count` of `rows`, a seeded sample (sorted)."""
    if len(rows) <= count:
        return rows
    rng = np.random.default_rng([seed, zlib.crc32(b"audit/retain")])
    return np.sort(rng.choice(rows, size=count, replace=False))


@dataclass(frozen=True)
class Populations:
    """Test rows the utility and forgetting targets are measured on."""

    served: np.ndarray  # Dtest minus every forgotten class
    unseen: np.ndarray  # served rows of speakers with no training recording
    others: np.ndarray | None  # served rows of speakers not forgotten (speaker requests in KWS)
    retain_sample: np.ndarray
    unseen_text: str


def populations(
    corpus: Corpus, groups: Sequence[ForgetGroup], retain: np.ndarray, thresholds: AcceptanceThresholds, seed: int
) -> Populations:
    """The test rows the targets of `groups` are measured on, and the seeded sample of the retain set."""
    test = corpus.indices("test")
    forgotten_labels = sorted({label for group in groups for label in group.labels})
    served = test[~np.isin(corpus.labels[test], forgotten_labels)]
    training_speakers = set(corpus.speakers[corpus.indices("train")].tolist())
    unseen = served[~np.isin(corpus.speakers[served], list(training_speakers))]
    text = f"{len(unseen)} test recordings of speakers with no training recording"
    if len(unseen) < thresholds.min_unseen_test_rows:
        text = (
            f"all {len(served)} served test recordings: the corpus has only {len(unseen)} test recording(s) of "
            f"speakers absent from training (fewer than min_unseen_test_rows = {thresholds.min_unseen_test_rows}; "
            "FSDD, for one, has every speaker in every split), so the target is the test accuracy of the model "
            "before unlearning"
        )
        unseen = served
    gone = sorted({speaker for g in groups if not g.class_like for speaker in g.speakers})
    others = served[~np.isin(corpus.speakers[served], gone)] if gone else None
    return Populations(served, unseen, others, _sample_rows(retain, RETAIN_SAMPLE, seed), text)


def role_metrics(scores: RowScores, groups: Sequence[ForgetGroup], request: ForgetGroup, pops: Populations,
                 corpus: Corpus, seed: int) -> dict[str, Any]:
    """The metrics of one model: overall accuracies, and Df accuracy / loss MIA per group."""
    test = corpus.indices("test")
    metrics: dict[str, Any] = {
        "df_accuracy": scores.accuracy(request.positions),
        "dr_accuracy": scores.accuracy(pops.retain_sample),
        "test_accuracy": scores.accuracy(test),
        "served_test_accuracy": scores.accuracy(pops.served),
        "remaining_mean_class_accuracy": scores.mean_class_accuracy(pops.served),
        "unseen_speaker_accuracy": scores.accuracy(pops.unseen),
        "loss_mia": scores.membership(request.positions, request.mia_rows, seed),
    }
    sizes = {"df_accuracy": len(request.positions), "dr_accuracy": len(pops.retain_sample), "test_accuracy": len(test),
             "served_test_accuracy": len(pops.served), "remaining_mean_class_accuracy": len(pops.served),
             "unseen_speaker_accuracy": len(pops.unseen)}
    if pops.others is not None:
        metrics["other_speakers_accuracy"] = scores.accuracy(pops.others)
        sizes["other_speakers_accuracy"] = len(pops.others)
    metrics["sizes"] = {key: int(n) for key, n in sizes.items()}
    metrics["groups"] = {
        f"{g.origin}: {g.name}": {
            "n_items": int(len(g.positions)),
            "df_accuracy": scores.accuracy(g.positions),
            "loss_mia": scores.membership(g.positions, g.mia_rows, seed),
        }
        for g in groups
    }
    return metrics
