"""The metric registry and the shared context every metric reads from.

A metric is a small unit `compute(context, role) -> dict[str, float]` registered in `METRICS`
by name, together with a sentence saying what it measures and which value means "forgotten".
`role` names the model it scores: "unlearned" (the model under test), "original" (before
unlearning) or "retrained" (retrained on Dr alone, the gold standard). Results are plain
dicts of floats, so a caller can cache them by (role, metric name) and resume.

Value convention: every key is a fraction in [0, 1] (or a difference of two, like the relearning
`gain`) unless its name starts with `n_` (a count); only metrics that say so (`time`) break it,
and those are not compared with the retrained model.

`EvalContext` computes each model's logits on Df, Dr and Dtest once and hands the same arrays
to every metric; all subsampling is seeded by `context.seed`, so every model is attacked on
the same rows.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..config import require
from ..data.corpus import Corpus
from ..registry import Registry
from ..training.data import ArrayData
from ..training.inference import compute_embeddings, predict_logits
from .mia import LOSS_MIA_FOLDS, MIAInputError, loss_mia, svc_mia
from .probe import representation_probe
from .relearn import RelearnConfig, relearn_attack
from .row_scores import accuracy_of, correct_predictions, example_losses, matched_nonmembers

ROLES: tuple[str, ...] = ("unlearned", "original", "retrained")
SUBSETS: tuple[str, ...] = ("forget", "retain", "test")


class MetricSkipped(Exception):
    """A metric does not apply to this split / model / data; the message says why."""


@dataclass
class EvalSettings:
    """Sizes and attack budgets of the metrics; defaults are the documented report settings."""

    loss_mia_folds: int = field(
        default=LOSS_MIA_FOLDS, metadata={"help": "maximum cross-validation folds of the loss MIA"}
    )
    svc_max_per_group: int = field(
        default=5000, metadata={"help": "cap on shadow members and non-members of the SVC MIA (seeded subsample)"}
    )
    probe_max_per_group: int = field(default=1000, metadata={"help": "cap on rows per probe group (seeded subsample)"})
    probe_folds: int = field(default=5, metadata={"help": "maximum cross-validation folds of the probe"})
    batch_size: int = field(default=256, metadata={"help": "batch size of the forward passes"})
    relearn: RelearnConfig = field(default_factory=RelearnConfig)

    def __post_init__(self) -> None:
        require(self.loss_mia_folds >= 2, "loss_mia_folds", f"must be at least 2, got {self.loss_mia_folds}")
        require(self.svc_max_per_group >= 1, "svc_max_per_group", f"must be at least 1, got {self.svc_max_per_group}")
        require(
            self.probe_max_per_group >= 2, "probe_max_per_group", f"must be at least 2, got {self.probe_max_per_group}"
        )
        require(self.probe_folds >= 2, "probe_folds", f"must be at least 2, got {self.probe_folds}")
        require(self.batch_size >= 1, "batch_size", f"must be at least 1, got {self.batch_size}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EvalContext:
    """What the metrics share: the data views, the models by role, and cached forward passes."""

    features: np.ndarray  # (N, ...) aligned with corpus.utterances
    corpus: Corpus
    forget_split: object  # data.splits.UnlearningSplit
    models: dict[str, nn.Module]  # role -> model; "unlearned" is always present
    seed: int = 0
    settings: EvalSettings = field(default_factory=EvalSettings)
    unlearn_seconds: float | None = None
    retrain_seconds: float | None = None
    _logits: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)
    _views: dict[str, ArrayData] = field(default_factory=dict, repr=False)

    def view(self, subset: str) -> ArrayData:
        """Df ("forget"), Dr ("retain") or Dtest ("test") as an ArrayData over the features."""
        if subset not in self._views:
            indices = {
                "forget": self.forget_split.forget_indices,
                "retain": self.forget_split.retain_indices,
                "test": self.forget_split.test_indices,
            }[subset](self.corpus)
            self._views[subset] = ArrayData(self.features, self.corpus.labels, indices)
        return self._views[subset]

    def labels(self, subset: str) -> np.ndarray:
        """(n,) int64 labels of a subset, in view order."""
        return self.corpus.labels[self.view(subset).indices]

    def logits(self, role: str, subset: str) -> np.ndarray:
        """(n, C) logits of the model in `role` on `subset`, computed once."""
        key = (role, subset)
        if key not in self._logits:
            self._logits[key] = predict_logits(self.models[role], self.view(subset), self.settings.batch_size)
        return self._logits[key]

    def probabilities(self, role: str, subset: str) -> np.ndarray:
        """(n, C) softmax outputs, in float64."""
        return torch.softmax(torch.from_numpy(self.logits(role, subset)).double(), dim=1).numpy()

    def losses(self, role: str, subset: str) -> np.ndarray:
        """(n,) per-sample cross-entropy (`row_scores.example_losses`)."""
        return example_losses(self.logits(role, subset), self.labels(subset))

    def correct(self, role: str, subset: str) -> np.ndarray:
        """(n,) booleans: prediction == label (`row_scores.correct_predictions`)."""
        return correct_predictions(self.logits(role, subset), self.labels(subset))

    def rng(self, purpose: str) -> np.random.Generator:
        """A generator seeded by `seed` and `purpose`, identical for every model role."""
        return np.random.default_rng([self.seed, zlib.crc32(purpose.encode())])

    # --- what was forgotten -------------------------------------------------------------------

    def forgotten_labels(self) -> list[int]:
        """Label ids of a class split; empty for other kinds."""
        return list(self.forget_split.forgotten_labels(self.corpus)) if self.forget_split.kind == "class" else []

    def forgotten_speakers(self) -> list[str]:
        """Speakers of a speaker split; empty for other kinds."""
        if self.forget_split.kind != "speaker":
            return []
        return sorted(set(self.corpus.speakers[self.view("forget").indices].tolist()))

    def test_mask_like_forget(self) -> tuple[np.ndarray, str]:
        """Test rows drawn from the same population as Df, and a phrase naming them.

        Class split: the forgotten classes' test rows. Speaker split: the forgotten speakers'
        test rows when there are at least two, else all test rows. Other splits: all test rows.
        The rule is `row_scores.matched_nonmembers`, which verification applies too.
        """
        return matched_nonmembers(self.corpus, self.view("test").indices, self.forgotten_labels(),
                                  self.forgotten_speakers())

    def test_mask_without_forgotten(self) -> tuple[np.ndarray, str]:
        """Test rows outside the forgotten classes (all of them for other splits), and a phrase.

        An attack that learns "non-member" from Dtest must not see the forgotten class there: its
        test rows look unseen to any model that forgot the class, so the attack would learn the
        class, not membership, and call Df unseen for that reason alone.
        """
        test = self.view("test").indices
        if self.forget_split.kind == "class":
            return ~np.isin(self.corpus.labels[test], self.forgotten_labels()), "test recordings of the remaining classes"
        return np.ones(len(test), dtype=bool), "all test recordings"


# ---------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class Metric:
    """A registered metric: how to compute it and how to read it."""

    name: str
    compute: Callable[[EvalContext, str], dict[str, float]]
    summary: str  # what it measures
    direction: str  # which value means "forgotten"
    headline: tuple[str, ...]  # result keys worth a line in the terminal summary
    roles: tuple[str, ...] = ROLES  # model roles it is computed for
    compared_to_retrain: bool = True  # enters gap_to_retrain (its values follow the convention)
    # The quantities it decides on, in the names methods use for what their objective reads
    # (methods.base.OBJECTIVE_QUANTITIES): a method that optimises one of them is judged on its target.
    reads: tuple[str, ...] = ()


METRICS: Registry[Metric] = Registry("metric")


def register_metric(
    name: str,
    *,
    summary: str,
    direction: str,
    headline: tuple[str, ...],
    roles: tuple[str, ...] = ROLES,
    compared_to_retrain: bool = True,
    reads: tuple[str, ...] = (),
) -> Callable:
    """Decorator registering `compute(context, role) -> dict` as the metric `name`."""

    def add(compute: Callable[[EvalContext, str], dict[str, float]]):
        metric = Metric(name, compute, summary, direction, headline, roles, compared_to_retrain, reads)
        METRICS.register(name)(metric)
        return compute

    return add


def metric_names() -> list[str]:
    return METRICS.names()


def metrics_reading(quantities: Iterable[str]) -> list[str]:
    """Names of the metrics that decide on any of `quantities` (what a method's objective reads,
    `Method.objective_reads`): the evaluations that method's own objective touches."""
    wanted = set(quantities)
    return [name for name in METRICS.names() if wanted & set(METRICS.get(name).reads)]


# ---------------------------------------------------------------------------------------------
# Metrics


@register_metric(
    "accuracy",
    summary="accuracy on Df, Dr and Dtest; class / speaker splits also split Dtest into forgotten vs remaining",
    direction=(
        "df: the retrained model's value is the target: about 0 when a class is forgotten (a keyword, or a "
        "speaker in SID), about its test accuracy (not 0) for sample unlearning and for speaker unlearning in "
        "KWS, where the keywords stay. dr, test, test_remaining, test_others: higher = more utility kept; "
        "a class split's Avg. Gap takes test_remaining as its utility term"
    ),
    headline=("df", "dr", "test", "test_forgotten", "test_remaining", "test_speaker", "test_others"),
)
def accuracy_metric(context: EvalContext, role: str) -> dict[str, float]:
    subsets = {"df": "forget", "dr": "retain", "test": "test"}
    result = {key: accuracy_of(context.correct(role, subset)) for key, subset in subsets.items()
              if len(context.view(subset))}
    test_correct = context.correct(role, "test")
    groups = _test_groups(context)
    result.update({key: accuracy_of(test_correct[rows]) for key, rows in groups.items() if rows.any()})
    result.update({f"n_{key}": float(rows.sum()) for key, rows in groups.items()})
    return result


def _test_groups(context: EvalContext) -> dict[str, np.ndarray]:
    """Masks over Dtest: forgotten vs remaining classes (class split), the speaker's vs others' (speaker split)."""
    test_rows = context.view("test").indices
    if context.forget_split.kind == "class":
        forgotten = np.isin(context.corpus.labels[test_rows], context.forgotten_labels())
        return {"test_forgotten": forgotten, "test_remaining": ~forgotten}
    if context.forget_split.kind == "speaker":
        speaker = np.isin(context.corpus.speakers[test_rows], context.forgotten_speakers())
        return {"test_speaker": speaker, "test_others": ~speaker}
    return {}


@register_metric(
    "loss_mia",
    summary=(
        "loss-based MIA (NeurIPS 2023 unlearning challenge): logistic regression on per-sample CE, Df (members) "
        "vs matched test recordings (non-members), balanced, stratified k-fold; mean accuracy and ROC-AUC"
    ),
    direction=(
        "0.5 = Df indistinguishable from unseen data (forgotten); 1.0 = Df recognised as training data; the "
        "retrained model's value is the target (it can exceed 0.5 when Df shares speakers with Dr but Dtest does not)"
    ),
    headline=("accuracy", "auc"),
    reads=("forget_loss", "heldout_loss"),  # the losses of Df (members) and of unseen recordings
)
def loss_mia_metric(context: EvalContext, role: str) -> dict[str, float]:
    matched, _ = context.test_mask_like_forget()
    try:
        return loss_mia(
            context.losses(role, "forget"),
            context.losses(role, "test")[matched],
            seed=context.seed,
            max_folds=context.settings.loss_mia_folds,
        )
    except MIAInputError as error:
        raise MetricSkipped(str(error)) from None


def _seeded_rows(size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` sorted positions out of `size`, without replacement (all of them if count >= size)."""
    if count >= size:
        return np.arange(size)
    return np.sort(rng.choice(size, size=count, replace=False))


@register_metric(
    "svc_mia",
    summary=(
        "SVC MIA (l1-sparse / SalUn): RBF SVC(C=3, gamma='auto') per softmax feature, shadow members = seeded "
        "sample of Dr, shadow non-members = Dtest without the forgotten classes (balanced); MIA-efficacy = "
        "fraction of Df predicted non-member"
    ),
    direction="higher = more of Df looks unseen (forgotten); the retrained model's value is the target",
    headline=("confidence",),
    reads=("forget_loss", "heldout_loss"),  # true-class confidence = exp(-loss), on Df and on Dtest
)
def svc_mia_metric(context: EvalContext, role: str) -> dict[str, float]:
    pool = np.flatnonzero(context.test_mask_without_forgotten()[0])  # candidate shadow non-members
    size = min(len(context.view("retain")), len(pool), context.settings.svc_max_per_group)
    if size < 1 or len(context.view("forget")) < 1:
        raise MetricSkipped("SVC MIA needs non-empty Df, Dr and Dtest (outside the forgotten classes)")
    members = _seeded_rows(len(context.view("retain")), size, context.rng("svc_mia/retain"))
    nonmembers = pool[_seeded_rows(len(pool), size, context.rng("svc_mia/test"))]
    return svc_mia(
        context.probabilities(role, "retain")[members],
        context.labels("retain")[members],
        context.probabilities(role, "test")[nonmembers],
        context.labels("test")[nonmembers],
        context.probabilities(role, "forget"),
        context.labels("forget"),
    )


def probe_groups(context: EvalContext) -> tuple[ArrayData, ArrayData, str]:
    """(target rows, other rows, description) of the representation probe, balanced and seeded.

    Class / speaker splits: Df (the forgotten class's or speaker's training recordings) vs Dr.
    Sample / files splits: Df (members) vs Dtest (non-members), i.e. membership in the embeddings.
    """
    forget = context.view("forget")
    if context.forget_split.kind in ("class", "speaker"):
        other, description = context.view("retain"), f"forgotten {context.forget_split.kind} (Df) vs retain set (Dr)"
    else:
        other, description = context.view("test"), "forget-set members (Df) vs test non-members (Dtest)"
    size = min(len(forget), len(other), context.settings.probe_max_per_group)
    rng = context.rng("probe")
    return (
        forget.subset(_seeded_rows(len(forget), size, rng)),
        other.subset(_seeded_rows(len(other), size, rng)),
        description,
    )


@register_metric(
    "probe",
    summary=(
        "linear probe (standardised logistic regression, stratified k-fold) on penultimate embeddings: forgotten "
        "class/speaker vs Dr, or, for sample unlearning, Df members vs Dtest non-members"
    ),
    direction=(
        "0.5 = the forgotten group is not linearly identifiable in the embeddings; compare with the retrained model"
    ),
    headline=("balanced_accuracy", "auc"),
)
def probe_metric(context: EvalContext, role: str) -> dict[str, float]:
    target, other, _ = probe_groups(context)
    model = context.models[role]
    batch_size = context.settings.batch_size
    embeddings = np.concatenate(
        [compute_embeddings(model, target, batch_size), compute_embeddings(model, other, batch_size)]
    )  # (2n, D)
    is_target = np.concatenate([np.ones(len(target), dtype=bool), np.zeros(len(other), dtype=bool)])
    try:
        return representation_probe(embeddings, is_target, seed=context.seed, max_folds=context.settings.probe_folds)
    except MIAInputError as error:
        raise MetricSkipped(str(error)) from None


@register_metric(
    "relearn",
    summary=(
        "relearning attack: fine-tune a copy briefly on part of Df (plus as many Dr rows); accuracy on the rest of Df"
    ),
    direction=(
        "lower 'early' (Df accuracy after the first few attack steps) and 'after' (at the end of the attack's "
        "schedule) = harder to relearn (more thoroughly forgotten); the retrained model under the same attack "
        "is the target"
    ),
    headline=("before", "early", "after"),
)
def relearn_metric(context: EvalContext, role: str) -> dict[str, float]:
    try:
        return relearn_attack(
            context.models[role],
            context.view("forget"),
            context.view("retain"),
            context.settings.relearn,
            seed=context.seed,
        )
    except ValueError as error:
        raise MetricSkipped(str(error)) from None


@register_metric(
    "time",
    summary="wall time of the unlearning call and its ratio to retraining (times passed in by the caller)",
    direction="lower ratio = cheaper than retraining; a ratio above 1 means retraining would have been faster",
    headline=("unlearn_seconds", "retrain_seconds", "ratio"),
    roles=("unlearned",),
    compared_to_retrain=False,
)
def time_metric(context: EvalContext, role: str) -> dict[str, float]:
    if context.unlearn_seconds is None:
        raise MetricSkipped("no unlearning time was given")
    result = {"unlearn_seconds": float(context.unlearn_seconds)}
    if context.retrain_seconds is not None:
        result["retrain_seconds"] = float(context.retrain_seconds)
        if context.retrain_seconds > 0:
            result["ratio"] = context.unlearn_seconds / context.retrain_seconds
        if context.unlearn_seconds > 0:
            result["speedup"] = context.retrain_seconds / context.unlearn_seconds
    return result
