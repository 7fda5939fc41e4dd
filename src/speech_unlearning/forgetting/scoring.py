"""What verification measures, and on which rows: the groups of training rows a request forgot
(`ForgetGroup`, each with the test rows its membership attack compares them with), the test
populations the targets are measured on, and the metrics of one model role over all of them.

How each number is computed is the evaluation layer's business: `role_metrics` reads an
`evaluation.row_scores.RowScores` (one forward pass per model), whose accuracy and loss MIA are
the definitions the benchmark's `accuracy` and `loss_mia` metrics use, and the non-members of
each group are chosen by the same rule as that metric's (`matched_nonmembers`)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..data.corpus import Corpus
from ..data.splits import UnlearningSplit
from ..evaluation.row_scores import RowScores, matched_nonmembers
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


def _group_name(corpus: Corpus, forget_split: UnlearningSplit) -> str:
    if forget_split.kind == "class":
        word = "keyword" if corpus.task == "kws" else "class"
        return f"{word}(s) {', '.join(forget_split.params['classes'])}"
    if forget_split.kind == "speaker":
        speakers = forget_split.params.get("speakers") or sorted(
            set(corpus.speakers[forget_split.forget_indices(corpus)].tolist()))
        return f"speaker(s) {', '.join(map(str, speakers))}"
    if forget_split.kind == "sample":
        return f"random sample of {len(forget_split.forget_ids)} recording(s)"
    return f"{len(forget_split.forget_ids)} listed recording(s)"


def forget_group(corpus: Corpus, forget_split: UnlearningSplit, origin: str,
                 thresholds: AcceptanceThresholds | None = None) -> ForgetGroup:
    """The group of `forget_split`, with the loss-MIA non-members drawn from the same population as Df
    (`evaluation.row_scores.matched_nonmembers`: forgotten classes' test recordings, else the
    forgotten speakers' when there are at least two, else all test recordings)."""
    positions = forget_split.forget_indices(corpus)
    labels = tuple(forget_split.forgotten_labels(corpus))
    speakers = tuple(sorted(set(corpus.speakers[positions].tolist()))) if forget_split.kind == "speaker" else ()
    test = corpus.indices("test")
    matched, text = matched_nonmembers(corpus, test, labels, speakers)
    return ForgetGroup(_group_name(corpus, forget_split), origin, positions, labels, test[matched], text, speakers,
                       thresholds)


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
        "loss_mia": scores.loss_mia(request.positions, request.mia_rows, seed),
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
            "loss_mia": scores.loss_mia(g.positions, g.mia_rows, seed),
        }
        for g in groups
    }
    return metrics
