"""Verification of an applied deletion request: acceptance checks with sample sizes, intervals and a verdict.

`verify_request` scores the model before and after unlearning (and, optionally, a model
retrained on the retain set) on what the request forgot and on the test set, and compares the
result with `AcceptanceThresholds`:

- forgetting, per forgotten group (the request's keywords, speakers, files; earlier requests'
  groups again): the accuracy on Df must be near its target, and the loss-based membership
  attack must be near its target.
  * Targets with a retrained reference (`--verify-retrain`): the retrained model's values.
  * Without: for a forgotten class (a keyword, or a speaker in speaker ID) the accuracy target is
    chance, 1 / num_classes, and lower is as good (a model retrained without the class never
    predicts it); for recordings whose labels stay in use (files, a speaker in keyword
    spotting) the target is the accuracy of the model before unlearning on speakers it never
    heard: a retrained model still recognises the keywords in those recordings, just as well as
    in any unseen speaker's, so an accuracy near zero would itself reveal the request. The
    membership-attack target is 0.5 (members indistinguishable from unseen recordings).
- utility: the Dtest accuracy on the classes the model still serves may drop by at most
  `max_test_drop_pp` points; the mean per-class accuracy over the remaining classes (class
  requests) and the accuracy on the other speakers' test recordings (speaker requests in
  keyword spotting) by at most `max_remaining_drop_pp`.

Every check reports its sample size and a 95 % Wilson interval; a check on fewer than
`min_check_items` recordings is "not enough recordings (n = 3)" rather than pass or fail.
Values are compared with their limits up to `TOLERANCE` (0.6000000000000001 is 0.6). Each check
also says whether the model before unlearning already met it.

Verdicts: "pass"; "fail" (a check failed); "no-op" when the weights did not change (a byte-identical
model is never a pass, even when the Original already met every check: then there was nothing
measurable to forget, which the audit says). Earlier requests are checked again against the
thresholds they were accepted with, as their history entry records them.

Logits are computed once per model on only the rows the checks need (Df groups, Dtest and a
seeded sample of Dr), so verification stays cheap for large backbones. The membership attack is
the evaluation layer's `loss_mia`, the intervals its `wilson_interval`.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..config import from_mapping, require
from ..data.corpus import Corpus
from ..data.splits import UnlearningSplit
from ..evaluation.intervals import wilson_interval
from ..training.data import ArrayData
from ..training.inference import per_sample_loss, predict_logits
from .history import EarlierRequest, merge_splits

TOLERANCE = 1e-9  # float noise allowed when a value is compared with its limit
VERDICTS = ("pass", "fail", "no-op")
RETAIN_SAMPLE = 500  # Dr rows scored for the Dr accuracy (seeded sample; Dr can be the whole corpus)
ROLES: tuple[str, ...] = ("before", "after", "retrained")


@dataclass
class AcceptanceThresholds:
    """When a deletion request counts as done (`--threshold key=value`); points are percentage points."""

    forget_tolerance_pp: float = field(
        default=10.0,
        metadata={"help": "Df accuracy may exceed its target by this much (and, for recordings whose labels "
                          "stay in use, also fall short of it by this much)"},
    )
    mia_tolerance_pp: float = field(
        default=10.0, metadata={"help": "loss-MIA accuracy on Df may differ from its target by this much"}
    )
    max_test_drop_pp: float = field(
        default=3.0,
        metadata={"help": "largest allowed drop of Dtest accuracy on the classes still served (negative: "
                          "demand a gain)"},
    )
    max_remaining_drop_pp: float = field(
        default=3.0,
        metadata={"help": "largest allowed drop of the remaining classes' mean per-class accuracy, and of the "
                          "other speakers' accuracy"},
    )
    min_unseen_test_rows: int = field(
        default=20,
        metadata={"help": "test recordings of never-seen speakers needed to use them as the unseen-speaker "
                          "target; fewer: all served test recordings"},
    )
    min_check_items: int = field(
        default=10,
        metadata={"help": "recordings a forgetting check needs to mean anything; fewer: 'not enough recordings'"},
    )
    recheck_earlier: bool = field(
        default=True, metadata={"help": "check the items of earlier requests again (they must stay forgotten)"}
    )

    def __post_init__(self) -> None:
        for name in ("forget_tolerance_pp", "mia_tolerance_pp"):
            require(0 <= getattr(self, name) <= 100, name, f"must be in [0, 100], got {getattr(self, name)}")
        for name in ("max_test_drop_pp", "max_remaining_drop_pp"):
            require(-100 <= getattr(self, name) <= 100, name, f"must be in [-100, 100], got {getattr(self, name)}")
        require(self.min_unseen_test_rows >= 1, "min_unseen_test_rows", f"must be >= 1, got {self.min_unseen_test_rows}")
        require(self.min_check_items >= 1, "min_check_items", f"must be >= 1, got {self.min_check_items}")


def thresholds_from(stored: Mapping[str, Any] | None, default: AcceptanceThresholds) -> AcceptanceThresholds:
    """The thresholds a history entry recorded (keys of older versions ignored), else `default`."""
    if not stored:
        return default
    known = {f.name for f in dataclasses.fields(AcceptanceThresholds)}
    return from_mapping(AcceptanceThresholds, {k: v for k, v in stored.items() if k in known},
                        where="thresholds recorded in the checkpoint history")


# ---------------------------------------------------------------------------------------------
# What was forgotten: groups of training rows with their membership-attack counterparts


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


# ---------------------------------------------------------------------------------------------
# Scores of one model on the rows that matter


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


# ---------------------------------------------------------------------------------------------
# Checks


@dataclass
class Check:
    """One acceptance check: a value, its target, the rule, and whether it passed (None: not run)."""

    name: str
    category: str  # "forgetting" | "utility" | "earlier requests"
    value: float | None
    target: float | None
    target_source: str  # what the target is, e.g. "chance, 1/10"
    rule: str  # e.g. "within 10 pp of the target"
    passed: bool | None
    note: str = ""
    n: int | None = None  # recordings the value was measured on
    interval: tuple[float, float] | None = None  # 95 % interval of the value
    original_passed: bool | None = None  # whether the model before unlearning already met the check

    @property
    def result(self) -> str:
        """"pass", "FAIL", "not enough recordings (n = 3)" or "not run"."""
        if self.passed is not None:
            return "pass" if self.passed else "FAIL"
        return self.note if self.note.startswith("not enough recordings") else "not run"

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["interval"] = list(self.interval) if self.interval is not None else None
        values["result"] = self.result
        return values


@dataclass
class Verification:
    """Everything `verify_request` measured and decided."""

    checks: list[Check]
    metrics: dict[str, dict[str, Any]]  # role -> metric name -> value (rates in [0, 1])
    thresholds: AcceptanceThresholds
    notes: list[str]
    gap_to_retrain: dict | None = None
    weights_changed: bool | None = None  # None: not known (the caller did not compare)

    @property
    def verdict(self) -> str:
        """"fail" when a check failed; "no-op" when the weights did not change; else "pass"."""
        if any(check.passed is False for check in self.checks):
            return "fail"
        return "no-op" if self.weights_changed is False else "pass"

    @property
    def nothing_to_forget(self) -> bool:
        """Whether the model before unlearning already met every check that ran."""
        ran = [check for check in self.checks if check.passed is not None]
        return bool(ran) and all(check.original_passed is not False for check in ran)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if check.passed is False]


def percent(value: float | None) -> str:
    """0.123 -> "12.3 %"; None -> "-"."""
    return "-" if value is None else f"{100 * value:.1f} %"


def _sample_rows(rows: np.ndarray, count: int, seed: int) -> np.ndarray:
    """At most `count` of `rows`, a seeded sample (sorted)."""
    if len(rows) <= count:
        return rows
    rng = np.random.default_rng([seed, zlib.crc32(b"audit/retain")])
    return np.sort(rng.choice(rows, size=count, replace=False))


@dataclass(frozen=True)
class _Populations:
    """Test rows the utility and forgetting targets are measured on."""

    served: np.ndarray  # Dtest minus every forgotten class
    unseen: np.ndarray  # served rows of speakers with no training recording
    others: np.ndarray | None  # served rows of speakers not forgotten (speaker requests in KWS)
    retain_sample: np.ndarray
    unseen_text: str


def _populations(
    corpus: Corpus, groups: Sequence[ForgetGroup], retain: np.ndarray, thresholds: AcceptanceThresholds, seed: int
) -> _Populations:
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
    return _Populations(served, unseen, others, _sample_rows(retain, RETAIN_SAMPLE, seed), text)


def _role_metrics(scores: RowScores, groups: Sequence[ForgetGroup], request: ForgetGroup, pops: _Populations,
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


def _mia_accuracy(entry: Mapping[str, Any]) -> float | None:
    mia = entry.get("loss_mia")
    return None if mia is None else mia["accuracy"]


def _interval(value: float | None, n: int) -> tuple[float, float] | None:
    return None if value is None else wilson_interval(value, n)


def within(value: float, target: float, tolerance_pp: float) -> bool:
    """|value - target| <= tolerance, up to float noise (0.6000000000000001 is within 10 pp of 0.5)."""
    return abs(value - target) <= tolerance_pp / 100 + TOLERANCE


def at_most_above(value: float, target: float, tolerance_pp: float) -> bool:
    """value <= target + tolerance, up to float noise."""
    return value <= target + tolerance_pp / 100 + TOLERANCE


def _df_rule(group: ForgetGroup, pp: float):
    """(rule text, test(value, target)) of the Df accuracy check with a tolerance of `pp` points."""
    if group.class_like:
        return f"at most {pp:.3g} pp above the target", lambda v, t: at_most_above(v, t, pp)
    return f"within {pp:.3g} pp of the target", lambda v, t: within(v, t, pp)


def _forgetting_checks(group: ForgetGroup, metrics: Mapping[str, Mapping[str, Any]], corpus: Corpus,
                       thresholds: AcceptanceThresholds, category: str) -> list[Check]:
    """Df accuracy and loss MIA of `group` after unlearning, each against its target (with the
    group's own thresholds when an earlier request recorded them)."""
    thresholds = group.thresholds or thresholds
    key = f"{group.origin}: {group.name}"
    after, before = metrics["after"]["groups"][key], metrics["before"]["groups"][key]
    pp = thresholds.forget_tolerance_pp
    reference = retrain_reference(metrics, key, lambda entry: entry["df_accuracy"])
    if reference is not None:
        target, pp, source = reference.target_for(pp, "Df accuracy")
    elif group.class_like:
        target, source = 1 / corpus.num_classes, f"chance, 1/{corpus.num_classes}"
    else:
        target, source = metrics["before"]["unseen_speaker_accuracy"], "accuracy before unlearning on unseen speakers"
    rule, test = _df_rule(group, pp)
    n = int(len(group.positions))
    value = after["df_accuracy"]
    name = f"Df accuracy, {group.name}"
    if n < thresholds.min_check_items:
        note = f"not enough recordings (n = {n}; a check needs {thresholds.min_check_items})"
        checks = [Check(name, category, value, target, source, rule, None, note, n, _interval(value, n))]
    else:
        checks = [Check(name, category, value, target, source, rule, bool(test(value, target)), "", n,
                        _interval(value, n), bool(test(before["df_accuracy"], target)))]
    checks.append(_mia_check(group, after, before, retrain_reference(metrics, key, _mia_accuracy), thresholds,
                             category))
    return checks


@dataclass(frozen=True)
class RetrainReference:
    """One value over the retrained models (`--verify-retrain`, one or several seeds)."""

    values: tuple[float, ...]

    def target_for(self, tolerance_pp: float, what: str) -> tuple[float, float, str]:
        """(target, tolerance in points, description): one Retrain gives its value; several give their
        mean, and the tolerance widens to twice their standard deviation when that is larger, since a
        Retrain of another seed lands anywhere in that spread."""
        mean = float(np.mean(self.values))
        if len(self.values) == 1:
            return mean, tolerance_pp, f"the retrained model's {what}"
        spread_pp = 200 * float(np.std(self.values, ddof=1))
        wider = max(tolerance_pp, spread_pp)
        return mean, wider, (f"the mean of {len(self.values)} retrained models' {what} (tolerance: the larger of "
                             f"{tolerance_pp:g} pp and twice their standard deviation, {spread_pp:.1f} pp)")


def retrain_reference(metrics: Mapping[str, Mapping[str, Any]], key: str, read) -> RetrainReference | None:
    """`read(group entry)` over every retrained role ("retrained", "retrained 2", ...); None without any."""
    values = [read(role_metrics["groups"][key]) for role, role_metrics in metrics.items()
              if role.startswith("retrained") and key in role_metrics.get("groups", {})]  # fmt: skip
    values = [float(v) for v in values if v is not None]
    return RetrainReference(tuple(values)) if values else None


def _mia_check(group: ForgetGroup, after, before, reference: RetrainReference | None,
               thresholds: AcceptanceThresholds, category: str) -> Check:
    """The loss membership attack on `group` against its target (0.5, or the retrained models')."""
    pp = thresholds.mia_tolerance_pp
    target, source = 0.5, "chance, 0.5"
    if reference is not None:
        target, pp, source = reference.target_for(pp, "loss MIA")
    value, rule = _mia_accuracy(after), f"within {pp:.3g} pp of the target"
    name = f"loss MIA, {group.name}"
    n = int(2 * after["loss_mia"]["n_per_group"]) if after.get("loss_mia") else 0
    if value is None or target is None:
        return Check(name, category, value, target, source, rule, None,
                     "not run: the attack needs at least 2 members and 2 non-members", n)
    if len(group.positions) < thresholds.min_check_items:
        note = f"not enough recordings (n = {len(group.positions)}; a check needs {thresholds.min_check_items})"
        return Check(name, category, value, target, source, rule, None, note, n, _interval(value, n))
    original = _mia_accuracy(before)
    return Check(name, category, value, target, source, rule, within(value, target, pp),
                 f"members: Df; non-members: {group.mia_rows_text}", n, _interval(value, n),
                 None if original is None else within(original, target, pp))


def _drop_check(name: str, key: str, metrics: Mapping[str, Mapping[str, Any]], limit_pp: float, note: str) -> Check:
    """The value after unlearning may fall at most `limit_pp` points below the value before."""
    before, after = metrics["before"].get(key), metrics["after"].get(key)
    n = int(metrics["after"].get("sizes", {}).get(key, 0))
    rule = f"drop of at most {limit_pp:g} pp"
    if before is None or after is None:
        return Check(name, "utility", after, before, "the value before unlearning", rule, None, "no test recordings", n)
    drop_pp = 100 * (before - after)
    return Check(name, "utility", after, before, "the value before unlearning", rule,
                 at_most_above(before - after, 0.0, limit_pp), f"drop {drop_pp:.2f} pp; {note}", n,
                 _interval(after, n), at_most_above(0.0, 0.0, limit_pp))


def _utility_checks(groups: Sequence[ForgetGroup], metrics, thresholds: AcceptanceThresholds) -> list[Check]:
    checks = [_drop_check("Dtest accuracy (classes still served)", "served_test_accuracy", metrics,
                          thresholds.max_test_drop_pp, "test recordings of forgotten classes excluded")]
    if any(group.class_like for group in groups):
        checks.append(_drop_check("mean per-class accuracy, remaining classes", "remaining_mean_class_accuracy",
                                  metrics, thresholds.max_remaining_drop_pp, "macro average over served classes"))
    if "other_speakers_accuracy" in metrics["after"]:
        checks.append(_drop_check("Dtest accuracy, other speakers", "other_speakers_accuracy", metrics,
                                  thresholds.max_remaining_drop_pp, "test recordings of the forgotten speaker(s) excluded"))
    return checks


def verify_request(
    models: Mapping[str, nn.Module],
    features: np.ndarray,
    corpus: Corpus,
    current: Sequence[UnlearningSplit],
    earlier: Sequence[EarlierRequest],
    retain: np.ndarray,
    thresholds: AcceptanceThresholds,
    seed: int = 0,
    batch_size: int = 256,
    weights_changed: bool | None = None,
) -> Verification:
    """Score `models` ("before", "after", optionally "retrained", "retrained 2", ... of several
    seeds) and apply `thresholds`.

    `current` are the request's component splits, `earlier` the requests applied before (each
    re-checked with the thresholds it recorded), `retain` the corpus positions of the retain
    set, `weights_changed` whether "after" differs from "before" byte for byte (False makes the
    verdict "no-op"). See the module docstring for the targets.
    """
    groups = [forget_group(corpus, split, "this request") for split in current]
    earlier_groups = [
        forget_group(corpus, split, f"earlier request {request.request_id}", _own_thresholds(request, thresholds))
        for request in earlier for split in request.splits
    ]
    request = forget_group(corpus, merge_splits(corpus, list(current)), "this request")
    every = groups + earlier_groups
    pops = _populations(corpus, every, retain, thresholds, seed)
    rows = np.concatenate([corpus.indices("test"), pops.retain_sample, *[g.positions for g in every]])
    metrics = {
        role: _role_metrics(RowScores(model, features, corpus, rows, batch_size), every, request, pops, corpus, seed)
        for role, model in models.items()
    }
    checks = [c for g in groups for c in _forgetting_checks(g, metrics, corpus, thresholds, "forgetting")]
    if thresholds.recheck_earlier:
        checks += [c for g in earlier_groups for c in _forgetting_checks(g, metrics, corpus, thresholds, "earlier requests")]
    checks += _utility_checks(every, metrics, thresholds)
    notes = _notes(corpus, groups, pops, thresholds, any(role.startswith("retrained") for role in models),
                   earlier_groups)
    gap = _gap(metrics) if "retrained" in metrics else None
    if weights_changed is False:
        notes.insert(0, "The weights did not change (byte-identical to the checkpoint before): nothing was "
                        "unlearned, so this is not a pass" + (", and the model before unlearning already met every "
                        "check: nothing measurable to forget" if _all_met(checks) else ""))
    return Verification(checks, metrics, thresholds, notes, gap, weights_changed)


def _own_thresholds(request: EarlierRequest, default: AcceptanceThresholds) -> AcceptanceThresholds | None:
    return thresholds_from(request.thresholds, default) if request.thresholds else None


def _all_met(checks: Sequence[Check]) -> bool:
    ran = [check for check in checks if check.passed is not None]
    return bool(ran) and all(check.original_passed is not False for check in ran)


def _gap(metrics: Mapping[str, Mapping[str, Any]]) -> dict:
    """Avg. Gap of the unlearned model to the retrained one over Df, Dr, Dtest accuracy and the loss MIA."""
    from ..evaluation.gap import gap_to_retrain

    def table(role: str) -> dict:
        values = metrics[role]
        accuracy = {k: values[f"{k}_accuracy"] for k in ("df", "dr", "test") if values.get(f"{k}_accuracy") is not None}
        mia = {"accuracy": values["loss_mia"]["accuracy"]} if values.get("loss_mia") else {}
        return {"accuracy": accuracy, "loss_mia": mia}

    return gap_to_retrain(table("after"), table("retrained"))


def _notes(corpus: Corpus, groups: Sequence[ForgetGroup], pops: _Populations, thresholds: AcceptanceThresholds,
           retrained: bool, earlier: Sequence[ForgetGroup]) -> list[str]:
    notes = []
    if any(not group.class_like for group in groups) and not retrained:
        notes.append(
            "Recordings whose labels stay in use (files, or a speaker in keyword spotting): a model retrained "
            "without them still recognises their keywords, as it does any unseen speaker's, so their forgetting "
            "target is not chance but the accuracy before unlearning on unseen speakers, measured on "
            f"{pops.unseen_text}. An accuracy far below it would itself reveal which recordings were removed."
        )
    if any(group.class_like for group in groups) and not retrained:
        notes.append(
            f"Forgotten classes: the target Df accuracy is chance (1/{corpus.num_classes}); lower passes too, since "
            "a model retrained without a class never predicts it."
        )
    if retrained:
        notes.append("Targets are the values of a model retrained on the retain set with the checkpoint's recipe.")
    notes.append(f"Dr accuracy is measured on a seeded sample of at most {RETAIN_SAMPLE} retain recordings.")
    if any(len(group.positions) < thresholds.min_check_items for group in groups):
        notes.append(f"A request of fewer than {thresholds.min_check_items} recordings is too small for its "
                     "forgetting checks to mean anything (one recording moves the accuracy by 100/n points); they are "
                     "reported, not judged.")
    if earlier and not thresholds.recheck_earlier:
        notes.append("Earlier requests were scored but not checked (recheck_earlier = false).")
    elif earlier:
        notes.append(f"{len(earlier)} group(s) of earlier requests were checked again, each with the thresholds it "
                     "was accepted with where its history records them: they must stay forgotten.")
    return notes
