"""Verification of an applied deletion request, and its audit report.

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

Logits are computed once per model on only the rows the checks need (Df groups, Dtest and a
seeded sample of Dr), so verification stays cheap for large backbones.
"""

from __future__ import annotations

import platform
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..config import require
from ..data.corpus import Corpus
from ..data.splits import UnlearningSplit
from ..io import atomic_write_json, atomic_write_text, sha256_file
from ..training.data import ArrayData
from ..training.loop import per_sample_loss, predict_logits

AUDIT_SCHEMA_VERSION = 1
AUDIT_JSON = "audit.json"
AUDIT_MD = "audit.md"
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
    recheck_earlier: bool = field(
        default=True, metadata={"help": "check the items of earlier requests again (they must stay forgotten)"}
    )

    def __post_init__(self) -> None:
        for name in ("forget_tolerance_pp", "mia_tolerance_pp"):
            require(0 <= getattr(self, name) <= 100, name, f"must be in [0, 100], got {getattr(self, name)}")
        for name in ("max_test_drop_pp", "max_remaining_drop_pp"):
            require(-100 <= getattr(self, name) <= 100, name, f"must be in [-100, 100], got {getattr(self, name)}")
        require(self.min_unseen_test_rows >= 1, "min_unseen_test_rows", f"must be >= 1, got {self.min_unseen_test_rows}")


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


def forget_group(corpus: Corpus, split: UnlearningSplit, origin: str) -> ForgetGroup:
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
    return ForgetGroup(_group_name(corpus, split), origin, positions, labels, mia_rows, text, speakers)


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Verification:
    """Everything `verify_request` measured and decided."""

    checks: list[Check]
    metrics: dict[str, dict[str, Any]]  # role -> metric name -> value (rates in [0, 1])
    thresholds: AcceptanceThresholds
    notes: list[str]
    gap_to_retrain: dict | None = None

    @property
    def verdict(self) -> str:
        return "fail" if any(check.passed is False for check in self.checks) else "pass"

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
    if pops.others is not None:
        metrics["other_speakers_accuracy"] = scores.accuracy(pops.others)
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


def _forgetting_checks(group: ForgetGroup, metrics: Mapping[str, Mapping[str, Any]], corpus: Corpus,
                       thresholds: AcceptanceThresholds, category: str) -> list[Check]:
    """Df accuracy and loss MIA of `group` after unlearning, each against its target."""
    key = f"{group.origin}: {group.name}"
    after = metrics["after"]["groups"][key]
    retrained = metrics.get("retrained", {}).get("groups", {}).get(key)
    tolerance = thresholds.forget_tolerance_pp / 100
    if retrained is not None:
        target, source = retrained["df_accuracy"], "the retrained model's Df accuracy"
    elif group.class_like:
        target, source = 1 / corpus.num_classes, f"chance, 1/{corpus.num_classes}"
    else:
        target, source = metrics["before"]["unseen_speaker_accuracy"], "accuracy before unlearning on unseen speakers"
    value = after["df_accuracy"]
    if group.class_like:
        passed, rule = value <= target + tolerance, f"at most {thresholds.forget_tolerance_pp:g} pp above the target"
    else:
        passed, rule = abs(value - target) <= tolerance, f"within {thresholds.forget_tolerance_pp:g} pp of the target"
    checks = [Check(f"Df accuracy, {group.name}", category, value, target, source, rule, bool(passed))]
    mia_target = _mia_accuracy(retrained) if retrained is not None else 0.5
    mia_source = "the retrained model's loss MIA" if retrained is not None else "chance, 0.5"
    mia_value = _mia_accuracy(after)
    mia_rule = f"within {thresholds.mia_tolerance_pp:g} pp of the target"
    name = f"loss MIA, {group.name}"
    if mia_value is None or mia_target is None:
        checks.append(Check(name, category, mia_value, mia_target, mia_source, mia_rule, None,
                            "not run: the attack needs at least 2 members and 2 non-members"))
    else:
        passed = abs(mia_value - mia_target) <= thresholds.mia_tolerance_pp / 100
        checks.append(Check(name, category, mia_value, mia_target, mia_source, mia_rule, bool(passed),
                            f"members: Df; non-members: {group.mia_rows_text}"))
    return checks


def _drop_check(name: str, key: str, metrics: Mapping[str, Mapping[str, Any]], limit_pp: float, note: str) -> Check:
    """The value after unlearning may fall at most `limit_pp` points below the value before."""
    before, after = metrics["before"].get(key), metrics["after"].get(key)
    rule = f"drop of at most {limit_pp:g} pp"
    if before is None or after is None:
        return Check(name, "utility", after, before, "the value before unlearning", rule, None, "no test recordings")
    drop_pp = 100 * (before - after)
    return Check(name, "utility", after, before, "the value before unlearning", rule, drop_pp <= limit_pp + 1e-9,
                 f"drop {drop_pp:.2f} pp; {note}")


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
    earlier: Sequence[tuple[str, UnlearningSplit]],
    retain: np.ndarray,
    thresholds: AcceptanceThresholds,
    seed: int = 0,
    batch_size: int = 256,
) -> Verification:
    """Score `models` ("before", "after", optionally "retrained") and apply `thresholds`.

    `current` are the request's component splits, `earlier` (request id, split) pairs of
    requests applied before, `retain` the corpus positions of the retain set. See the module
    docstring for the targets.
    """
    from .requests import merge_splits

    groups = [forget_group(corpus, split, "this request") for split in current]
    earlier_groups = [forget_group(corpus, split, f"earlier request {rid}") for rid, split in earlier]
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
    notes = _notes(corpus, groups, pops, thresholds, "retrained" in models, earlier_groups)
    gap = _gap(metrics) if "retrained" in metrics else None
    return Verification(checks, metrics, thresholds, notes, gap)


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
    if earlier and not thresholds.recheck_earlier:
        notes.append("Earlier requests were scored but not checked (recheck_earlier = false).")
    elif earlier:
        notes.append(f"{len(earlier)} group(s) of earlier requests were checked again: they must stay forgotten.")
    return notes


# ---------------------------------------------------------------------------------------------
# The audit report


def forgotten_item_records(corpus: Corpus, positions: Iterable[int], kind_of: Mapping[str, str]) -> list[dict[str, Any]]:
    """One record per forgotten item: id, file (relative to the corpus root), the file's sha256, label,
    speaker and request kind. Hashes of the audio files only: never the audio itself."""
    hashes: dict[str, str] = {}
    records = []
    root = Path(corpus.root)
    for position in positions:
        utterance = corpus.utterances[int(position)]
        if utterance.path not in hashes:
            hashes[utterance.path] = sha256_file(utterance.path)
        path = Path(utterance.path)
        relative = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        records.append({
            "utt_id": utterance.utt_id, "file": relative, "file_sha256": hashes[utterance.path],
            "label": corpus.label_names[utterance.label], "speaker": utterance.speaker,
            "kind": kind_of.get(utterance.utt_id, ""),
        })  # fmt: skip
    return records


def software_versions() -> dict[str, str]:
    import numpy
    import sklearn

    return {"speech_unlearning": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "scikit-learn": sklearn.__version__, "python": platform.python_version()}


def _format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name}: {n}" for name, n in counts.items()) or "-"


def format_audit_markdown(audit: Mapping[str, Any]) -> str:
    """The human-readable audit: request, items, checkpoints, method, checks, metrics, notes."""
    request, verdict = audit["request"], audit["verdict"]
    counts = audit["resolution"]["counts"]
    lines = [
        f"# Deletion request audit: {request['id']}",
        "",
        f"**Verdict: {verdict.upper()}**" + ("" if verdict == "pass" else f" ({len(audit['failed_checks'])} check(s) failed)"),
        "",
        f"- request sha256: `{request['sha256']}`",
        f"- reason: {request['reason'] or '-'}",
        f"- asked: speakers {', '.join(request['speakers']) or '-'}; keywords {', '.join(request['keywords']) or '-'}; "
        f"{len(request['files'])} file(s) or utterance id(s)",
        f"- corpus: `{audit['corpus']['name']}` ({audit['corpus']['task']}), fingerprint `{audit['corpus']['fingerprint']}`",
        f"- forgotten now: {counts['total']} item(s) ({_counts(counts['per_kind'])}); "
        f"already forgotten earlier: {counts['already_forgotten']}",
        f"- per class: {_counts(counts['per_class'])}",
        f"- per speaker: {_counts(counts['per_speaker'])}",
    ]
    if counts["ignored"]:
        lines.append(f"- ignored (--ignore-unknown): {'; '.join(counts['ignored'])}")
    before, after = audit["checkpoints"]["before"], audit["checkpoints"]["after"]
    lines += [
        f"- checkpoint before: `{before['path']}` sha256 `{before['sha256']}`",
        f"- checkpoint after: " + (f"`{after['path']}` sha256 `{after['sha256']}`" if after else "not written"),
        f"- method: `{audit['method']['name']}` (chosen by: {audit['method']['choice']['source']}), "
        f"{audit['method']['seconds']:.2f} s of unlearning, budget {audit['method']['budget_seconds']} s",
        f"- wall time: {audit['wall_seconds']:.1f} s; software: "
        + ", ".join(f"{k} {v}" for k, v in audit["software"].items()),
        "",
        "## Checks",
        "",
        "| check | category | value | target | rule | result |",
        "|---|---|---|---|---|---|",
    ]
    for check in audit["checks"]:
        result = {True: "pass", False: "FAIL", None: "not run"}[check["passed"]]
        note = f" ({check['note']})" if check["note"] else ""
        lines.append(f"| {check['name']} | {check['category']} | {percent(check['value'])} | "
                     f"{percent(check['target'])} ({check['target_source']}) | {check['rule']} | {result}{note} |")
    lines += ["", "## Metrics", "", "| metric | " + " | ".join(audit["metrics"]) + " |",
              "|---|" + "---|" * len(audit["metrics"])]
    keys = [k for k in next(iter(audit["metrics"].values())) if k != "groups"]
    for key in keys:
        cells = [audit["metrics"][role].get(key) for role in audit["metrics"]]
        cells = [c["accuracy"] if isinstance(c, dict) else c for c in cells]
        lines.append(f"| {key} | " + " | ".join(_format_value(c) for c in cells) + " |")
    if audit.get("gap_to_retrain") and audit["gap_to_retrain"].get("avg_gap_pp") is not None:
        lines += ["", f"Avg. Gap to the retrained model: {audit['gap_to_retrain']['avg_gap_pp']:.2f} pp"]
    if audit.get("earlier_requests"):
        lines += ["", "## Earlier requests (checked again)", ""]
        lines += [f"- {e['request_id']} (sha256 `{e['request_sha256']}`): {e['n_items']} item(s)"
                  for e in audit["earlier_requests"]]
    lines += ["", "## Thresholds", ""] + [f"- {k} = {v}" for k, v in audit["thresholds"].items()]
    lines += ["", "## Notes", ""] + [f"- {note}" for note in audit["notes"]]
    lines += ["", f"Forgotten items and the sha256 of their audio files: {AUDIT_JSON} (`forgotten_items`)."]
    return "\n".join(lines) + "\n"


def write_audit(folder: str | Path, audit: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write `folder`/audit.json and `folder`/audit.md atomically; returns both paths."""
    folder = Path(folder)
    json_path, md_path = folder / AUDIT_JSON, folder / AUDIT_MD
    atomic_write_json(json_path, audit)
    atomic_write_text(md_path, format_audit_markdown(audit))
    return json_path, md_path
