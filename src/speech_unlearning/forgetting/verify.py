"""Verification of an applied deletion request: acceptance checks with sample sizes, intervals and a verdict.

`verify_request` scores the model before and after unlearning (and, optionally, a model
retrained on the retain set) on what the request forgot and on the test set, and compares the
result with `AcceptanceThresholds`:

- forgetting, per forgotten group (the request's keywords, speakers, files; earlier requests'
  groups again): the accuracy on Df must be near its target, and the loss-based membership
  attack must be near its target. "Near" is the tolerance in points plus `noise_z` standard errors
  of a rate measured on the check's n recordings: 15 recordings cannot tell 60 % from 50 %.
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
Values are compared with their limits up to `acceptance.TOLERANCE` (0.6000000000000001 is
0.6). Each check also says whether the model before unlearning already met it.

Verdicts: "pass"; "fail" (a check failed); "no-op" when the weights did not change (a byte-identical
model is never a pass, even when the Original already met every check); "nothing-to-forget" when
the weights changed and every check passed but the model before unlearning already met every
check too, so the checks cannot show that anything was forgotten (the model is kept, as after a
pass, and the audit says why it is not called one). Earlier requests are checked again against the
thresholds they were accepted with, as their history entry records them.

Logits are computed once per model on only the rows the checks need (Df groups, Dtest and a
seeded sample of Dr), so verification stays cheap for large backbones. Every number comes from
the evaluation layer, so it means what the benchmark's report means by it: accuracies and the
loss MIA from `evaluation.row_scores.RowScores` (the definitions of the `accuracy` and
`loss_mia` metrics, on the rows verification picks), the intervals from `wilson_interval`.

The thresholds, checks and verdict are defined in `acceptance`; which rows and populations are
measured, in `scoring`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from torch import nn

from ..data.corpus import Corpus
from ..data.splits import UnlearningSplit
from ..evaluation.intervals import wilson_interval
from ..evaluation.row_scores import RowScores
from .acceptance import (AcceptanceThresholds, Check, Verification, at_most_above, before_met_every_check,
                         thresholds_from, within)
from .history import EarlierRequest, merge_forget_splits
from .scoring import RETAIN_SAMPLE, ForgetGroup, Populations, forget_group, populations, role_metrics


def _mia_accuracy(entry: Mapping[str, Any]) -> float | None:
    mia = entry.get("loss_mia")
    return None if mia is None else mia["accuracy"]


def _interval(value: float | None, n: int) -> tuple[float, float] | None:
    return None if value is None else wilson_interval(value, n)


def _widened(thresholds: AcceptanceThresholds, pp: float, target: float, n: int) -> tuple[float, str]:
    """(tolerance widened by the sampling noise of n recordings, how it was made, for the rule text)."""
    wide = thresholds.widened_pp(pp, target, n)
    if wide == pp:
        return pp, ""
    return wide, f" ({pp:.3g} pp + {thresholds.noise_z:g} standard errors at n = {n})"


def _df_rule(group: ForgetGroup, pp: float, how: str = ""):
    """(rule text, test(value, target)) of the Df accuracy check with a tolerance of `pp` points."""
    if group.class_like:
        return f"at most {pp:.3g} pp above the target{how}", lambda v, t: at_most_above(v, t, pp)
    return f"within {pp:.3g} pp of the target{how}", lambda v, t: within(v, t, pp)


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
    n = int(len(group.positions))
    rule, test = _df_rule(group, *_widened(thresholds, pp, target, n))
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
    name = f"loss MIA, {group.name}"
    n = int(2 * after["loss_mia"]["n_per_group"]) if after.get("loss_mia") else 0
    pp, how = _widened(thresholds, pp, target, n)
    value, rule = _mia_accuracy(after), f"within {pp:.3g} pp of the target{how}"
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
    groups = [forget_group(corpus, forget_split, "this request") for forget_split in current]
    earlier_groups = [
        forget_group(corpus, forget_split, f"earlier request {request.request_id}", _own_thresholds(request, thresholds))
        for request in earlier for forget_split in request.splits
    ]
    request = forget_group(corpus, merge_forget_splits(corpus, list(current)), "this request")
    every = groups + earlier_groups
    pops = populations(corpus, every, retain, thresholds, seed)
    rows = np.concatenate([corpus.indices("test"), pops.retain_sample, *[g.positions for g in every]])
    metrics = {
        role: role_metrics(RowScores(model, features, corpus, rows, batch_size), every, request, pops, corpus, seed)
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
                        "check: nothing measurable to forget" if before_met_every_check(checks) else ""))
    return Verification(checks, metrics, thresholds, notes, gap, weights_changed)


def _own_thresholds(request: EarlierRequest, default: AcceptanceThresholds) -> AcceptanceThresholds | None:
    return thresholds_from(request.thresholds, default) if request.thresholds else None


def _gap(metrics: Mapping[str, Mapping[str, Any]]) -> dict:
    """Avg. Gap of the unlearned model to the retrained one over Df, Dr, Dtest accuracy and the loss MIA."""
    from ..evaluation.gap import gap_to_retrain

    def table(role: str) -> dict:
        values = metrics[role]
        accuracy = {k: values[f"{k}_accuracy"] for k in ("df", "dr", "test") if values.get(f"{k}_accuracy") is not None}
        mia = {"accuracy": values["loss_mia"]["accuracy"]} if values.get("loss_mia") else {}
        return {"accuracy": accuracy, "loss_mia": mia}

    return gap_to_retrain(table("after"), table("retrained"))


def _notes(corpus: Corpus, groups: Sequence[ForgetGroup], pops: Populations, thresholds: AcceptanceThresholds,
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
