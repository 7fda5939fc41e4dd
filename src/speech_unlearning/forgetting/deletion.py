"""A deletion request from start to finish, for `forget` (verified, audited) and `unlearn` (plain).

Both commands go through the same steps, so they cannot drift apart again:

1. `ForgetOptions` / `UnlearnOptions`: every argument checked (method and settings parsed once,
   thresholds, --out) before any data is loaded.
2. `load_subject`: the checkpoint, its corpus (same labels, features and fingerprint) and the
   requests its history records.
3. resolve the request to corpus positions (`request.py`);
4. `apply` (the only caller of the method engine): retain set = training set minus this and every
   earlier request;
5. `forget` only: `verify_request`, the verdict and the audit;
6. write everything inside --out at once: the checkpoint with the one history format
   (`history.history_entry`), split.json, audit.json / audit.md.

Exit codes (documented in the README): 0 pass (or nothing measurable to forget), 1 verification
failed (or a no-op), 2 bad request, 3 I/O or internal error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..config import to_dict
from ..methods.retrain import retrain_seed
from .acceptance import AcceptanceThresholds, Verification
from .apply import Applied, MethodSpec, Subject, apply, unlearn_subject, load_subject
from .audit import AUDIT_SCHEMA_VERSION, forgotten_item_records, software_versions, write_audit
from .choice import MethodChoice, choose_method
from .history import (
    BudgetChoice,
    feature_spec_of,
    history_entry,
    merge_forget_splits,
    original_seed,
    train_config_of,
    utc_now,
    with_entry,
)
from .output import check_output, check_writable
from .request import DeletionRequest, Resolution, UnlearnRequest, resolve_request
from .verify import verify_request

FORGET_SPLIT_FILE = "split.json"
EXIT_PASS, EXIT_FAILED, EXIT_BAD_REQUEST, EXIT_IO = 0, 1, 2, 3


def weights_sha256(folder: Path) -> str:
    """sha256 of the weights file, exactly as `sha256sum FOLDER/model.safetensors` prints it."""
    from ..io import sha256_file
    from ..models.checkpoint import WEIGHTS_FILE

    return sha256_file(Path(folder) / WEIGHTS_FILE)


# ---------------------------------------------------------------------------------------------
# forget


@dataclass(frozen=True)
class ForgetOptions:
    """A validated `forget` invocation."""

    checkpoint: Path
    out: Path | None  # None only for a dry run
    request: DeletionRequest
    thresholds: AcceptanceThresholds
    method: str  # "auto" or a method name (checked)
    overrides: Mapping[str, Any]
    budget_seconds: float | None
    seed: int = 0
    device: str = "auto"
    data_spec: str | None = None
    cache_dir: Path | None = None
    ignore_unknown: bool = False
    verify_retrain: bool = False
    retrain_seeds: int = 1  # Retrains of different seeds with --verify-retrain: their spread sets the tolerance
    keep_failed: bool = False
    allow_other_corpus: bool = False
    progress: bool = False
    choice_table: Mapping[str, Any] | None = None  # for --method auto; None: the shipped table
    choice_source: str | None = None


@dataclass
class Prepared:
    """The loaded checkpoint, the request resolved against its corpus, and the method to run."""

    subject: Subject
    resolution: Resolution
    choice: MethodChoice
    method: MethodSpec


def prepare(options: ForgetOptions) -> Prepared:
    """Load, resolve the request and choose the method (no compute, no writes)."""
    subject = load_subject(options.checkpoint, options.data_spec, options.cache_dir, options.allow_other_corpus,
                           options.progress, options.device)  # fmt: skip
    resolution = resolve_request(subject.corpus, options.request, subject.earlier_ids, options.ignore_unknown)
    source = {"table_source": options.choice_source} if options.choice_source else {}
    choice = choose_method(options.method, subject.corpus.task, resolution.kinds, options.choice_table, **source)
    method = MethodSpec.parse(choice.method, choice.overrides(options.overrides))
    return Prepared(subject, resolution, choice, method)


@dataclass
class ForgetOutcome:
    """What applying and verifying the request produced."""

    applied: Applied
    verification: Verification
    before_weights_sha256: str
    after: dict | None = None  # where the new checkpoint went, once written
    started: float = field(default_factory=time.perf_counter)


def run_forget(options: ForgetOptions, prepared: Prepared) -> ForgetOutcome:
    """Unlearn, optionally retrain a reference through the same path, and verify."""
    started = time.perf_counter()
    check_writable(options.out, options.checkpoint)
    subject, resolution = prepared.subject, prepared.resolution
    budget = _budget(subject.metadata, options.budget_seconds)
    before_sha = weights_sha256(options.checkpoint)
    forget = resolution.forget_positions(subject.corpus)
    applied = unlearn_subject(subject, forget, prepared.method, budget, options.seed, options.progress)
    models = {"before": subject.model, "after": applied.result.model}
    if options.verify_retrain:
        original = original_seed(subject.metadata)
        for number in range(options.retrain_seeds):
            role = "retrained" if number == 0 else f"retrained {number + 1}"
            models[role] = retrain_reference(subject, forget, retrain_seed(original, number), options.progress)
    verification = verify_request(models, subject.features, subject.corpus, resolution.splits(subject.corpus),
                                  subject.earlier, applied.retain, options.thresholds, seed=options.seed,
                                  weights_changed=applied.weights_changed)  # fmt: skip
    return ForgetOutcome(applied, verification, before_sha, started=started)


def _budget(metadata: Mapping[str, Any], given: float | None, lifted: bool = False) -> BudgetChoice:
    from .history import default_budget

    return default_budget(metadata, given, lifted)


def retrain_reference(subject: Subject, forget: np.ndarray, seed: int, progress: bool = False):
    """The Retrain method through `apply`: the checkpoint's recipe on the retain set, from the
    Original's starting point (the pretrained backbone where there was one), no time cap."""
    from ..config import ConfigError

    if train_config_of(subject.metadata) is None:
        raise ConfigError("--verify-retrain: the checkpoint records no train_config to retrain with")
    retrain = MethodSpec.parse("retrain")
    applied = unlearn_subject(subject, forget, retrain, BudgetChoice(None, "reference"), seed, progress)
    return applied.result.model


def forget_history_entry(options: ForgetOptions, prepared: Prepared, outcome: ForgetOutcome) -> dict[str, Any]:
    resolution, corpus = prepared.resolution, prepared.subject.corpus
    return history_entry(
        tool="forget", splits=resolution.splits(corpus), result=outcome.applied.result, budget=outcome.applied.budget,
        parent_sha256=outcome.before_weights_sha256, request_id=resolution.request.effective_id,
        request_sha256=resolution.request.sha256, kinds=resolution.kinds, verdict=outcome.verification.verdict,
        thresholds=to_dict(outcome.verification.thresholds),
        details={"counts": {"total": len(resolution.forget_ids),
                            "per_kind": resolution.counts(corpus)["per_kind"]}},
    )  # fmt: skip


def forget_metadata(options: ForgetOptions, prepared: Prepared, outcome: ForgetOutcome) -> dict[str, Any]:
    """The new checkpoint's metadata: the input's, with the cumulative split, history and verdict."""
    subject, verification = prepared.subject, outcome.verification
    entry = forget_history_entry(options, prepared, outcome)
    metadata = with_entry(subject.metadata, subject.corpus, subject.earlier,
                          prepared.resolution.splits(subject.corpus), entry)  # fmt: skip
    metadata["corpus"] = {**(subject.metadata.get("corpus") or {}), "spec": subject.corpus_spec,
                          "fingerprint": subject.corpus.fingerprint}  # fmt: skip
    metadata["verification"] = {
        "request_id": entry["request_id"],
        "verdict": verification.verdict,
        "failed_verification": not verification.accepted,
        "failed_checks": [check.name for check in verification.failed],
        "thresholds": to_dict(verification.thresholds),
    }
    return metadata


def write_forget_outputs(options: ForgetOptions, prepared: Prepared, outcome: ForgetOutcome) -> bool:
    """Build --out atomically: the checkpoint (on pass or with keep_failed) and, always, the audit.
    Returns whether the checkpoint was written."""
    from ..data.splits import save_forget_split
    from ..io import atomic_directory
    from ..models.checkpoint import save_checkpoint

    keep = outcome.verification.accepted or options.keep_failed
    corpus = prepared.subject.corpus
    with atomic_directory(options.out) as building:
        if keep:
            save_checkpoint(building, outcome.applied.result.model.cpu(), forget_metadata(options, prepared, outcome))
            save_forget_split(merge_forget_splits(corpus, prepared.resolution.splits(corpus)), building / FORGET_SPLIT_FILE)
            outcome.after = {"path": str(options.out.resolve()), "weights_sha256": weights_sha256(building)}
        write_audit(building, build_audit(options, prepared, outcome))
    return keep


def build_audit(options: ForgetOptions, prepared: Prepared, outcome: ForgetOutcome) -> dict[str, Any]:
    """audit.json: the request, its items' file hashes, checkpoints, method, checks, verdict."""
    resolution, corpus = prepared.resolution, prepared.subject.corpus
    result, verification = outcome.applied.result, outcome.verification
    request = resolution.request
    kind_of = {i: component.kind for component in resolution.components for i in component.forget_ids}
    asked = {key: value for key, value in request.canonical().items() if key not in ("id", "reason")}
    return {
        "schema_version": AUDIT_SCHEMA_VERSION,
        "created_at": utc_now(),
        "request": {"id": request.effective_id, "sha256": request.sha256, "reason": request.reason,
                    "source": request.source, **asked},
        "resolution": {"counts": resolution.counts(corpus), "overlaps": resolution.overlaps},
        "forgotten_items": forgotten_item_records(corpus, resolution.forget_positions(corpus), kind_of),
        "corpus": {"name": corpus.name, "task": corpus.task, "fingerprint": corpus.fingerprint,
                   "spec": prepared.subject.corpus_spec},
        "checkpoints": {"before": {"path": str(options.checkpoint.resolve()),
                                   "weights_sha256": outcome.before_weights_sha256},
                        "after": outcome.after},
        "weights_changed": outcome.applied.weights_changed,
        "nothing_to_forget": verification.nothing_to_forget,
        "method": {"name": result.name, "choice": prepared.choice.to_dict(), "config": result.config_dict(),
                   "seed": result.seed, "seconds": round(result.seconds, 2), "steps": result.steps,
                   "budget_seconds": outcome.applied.budget.to_dict()["seconds"],
                   "budget": outcome.applied.budget.to_dict(), "budget_exhausted": result.budget_exhausted,
                   "diverged": result.diverged},
        "software": software_versions(),
        "metrics": verification.metrics,
        "gap_to_retrain": verification.gap_to_retrain,
        "thresholds": to_dict(verification.thresholds),
        "checks": [check.to_dict() for check in verification.checks],
        "failed_checks": [check.name for check in verification.failed],
        "verdict": verification.verdict,
        "earlier_requests": [{"request_id": e.request_id, "request_sha256": e.request_sha256,
                              "n_items": len(e.forget_ids), "thresholds": e.thresholds}
                             for e in prepared.subject.earlier],
        "notes": verification.notes,
        "wall_seconds": round(time.perf_counter() - outcome.started, 2),
    }


def exit_code(verification: Verification) -> int:
    return EXIT_PASS if verification.accepted else EXIT_FAILED


# ---------------------------------------------------------------------------------------------
# unlearn: the same path without verification


@dataclass(frozen=True)
class UnlearnOptions:
    """A validated `unlearn` invocation."""

    checkpoint: Path
    out: Path
    request: UnlearnRequest
    method: MethodSpec
    budget_seconds: float | None
    budget_lifted: bool
    seed: int = 0
    device: str = "auto"
    cache_dir: Path | None = None
    allow_other_corpus: bool = False
    progress: bool = False


def check_unlearn_output(out: Path, checkpoint: Path, overwrite: bool) -> None:
    check_output(out, checkpoint, overwrite, replace_own=True)


@dataclass
class UnlearnOutcome:
    forget_split: Any  # UnlearningSplit of this request (already-forgotten items left out)
    applied: Applied
    accuracy_before: dict[str, float | None]
    accuracy_after: dict[str, float | None]
    subject: Subject


def run_unlearn(options: UnlearnOptions) -> UnlearnOutcome:
    """Load, resolve, apply and write OUT (checkpoint + split.json)."""
    check_writable(options.out, options.checkpoint)
    subject = load_subject(options.checkpoint, None, options.cache_dir, options.allow_other_corpus,
                           options.progress, options.device)  # fmt: skip
    forget_split = _without_earlier(options.request.resolve(subject.corpus, options.seed), subject)
    budget = _budget(subject.metadata, options.budget_seconds, options.budget_lifted)
    forget = forget_split.forget_indices(subject.corpus)
    applied = unlearn_subject(subject, forget, options.method, budget, options.seed, options.progress)
    before = subset_accuracies(subject.model, subject, forget, applied.retain, forget_split)
    after = subset_accuracies(applied.result.model, subject, forget, applied.retain, forget_split)
    outcome = UnlearnOutcome(forget_split, applied, before, after, subject)
    _write_unlearn(options, outcome)
    return outcome


def _without_earlier(forget_split, subject: Subject):
    """`forget_split` minus what earlier requests forgot; ValueError when nothing is left to forget."""
    earlier = subject.earlier_ids
    fresh = tuple(i for i in forget_split.forget_ids if i not in earlier)
    if not fresh:
        raise ValueError(f"the request's {len(forget_split.forget_ids)} item(s) were all forgotten by earlier requests "
                         "recorded in the checkpoint: nothing to unlearn")
    if len(fresh) == len(forget_split.forget_ids):
        return forget_split
    return replace(forget_split, forget_ids=fresh)


def subset_accuracies(model, subject: Subject, forget: np.ndarray, retain: np.ndarray, forget_split) -> dict:
    """Accuracy on Df, Dr and Dtest; for forgotten classes also Dtest split by class."""
    from ..training.data import ArrayData
    from ..training.inference import accuracy

    corpus, features = subject.corpus, subject.features
    test = forget_split.test_indices(corpus)
    scores = {name: accuracy(model, ArrayData(features, corpus.labels, rows))
              for name, rows in (("forget", forget), ("retain", retain), ("test", test))}
    forgotten = forget_split.forgotten_labels(corpus)
    if forgotten:
        in_forgotten = np.isin(corpus.labels[test], forgotten)
        scores["test_forgotten_classes"] = accuracy(model, ArrayData(features, corpus.labels, test[in_forgotten]))
        scores["test_other_classes"] = accuracy(model, ArrayData(features, corpus.labels, test[~in_forgotten]))
    return {key: (None if value != value else value) for key, value in scores.items()}  # NaN: empty subset


def _write_unlearn(options: UnlearnOptions, outcome: UnlearnOutcome) -> None:
    from ..data.splits import save_forget_split
    from ..io import atomic_directory
    from ..models.checkpoint import jsonable, save_checkpoint

    subject, applied = outcome.subject, outcome.applied
    result = applied.result
    entry = history_entry(
        tool="unlearn", splits=[outcome.forget_split], result=result, budget=applied.budget,
        parent_sha256=weights_sha256(options.checkpoint), kinds=[outcome.forget_split.kind],
        details={"forget_count": int(len(applied.forget)), "retain_count": int(len(applied.retain)),
                 "weights_changed": applied.weights_changed, "accuracy_before": outcome.accuracy_before,
                 "accuracy_after": outcome.accuracy_after, "source_checkpoint": str(options.checkpoint.resolve()),
                 "source_weights_sha256": subject.metadata.get("weights_sha256")},
    )  # fmt: skip
    metadata = with_entry(subject.metadata, subject.corpus, subject.earlier, [outcome.forget_split], entry)
    metadata.update(method=result.name, config=result.config_dict(), seconds=result.seconds,
                    budget_exhausted=result.budget_exhausted, steps=result.steps,
                    metrics={f"{name}_accuracy": value for name, value in outcome.accuracy_after.items()})
    with atomic_directory(options.out) as building:
        save_checkpoint(building, result.model.cpu(), jsonable(metadata))
        save_forget_split(outcome.forget_split, building / FORGET_SPLIT_FILE)


# ---------------------------------------------------------------------------------------------
# the benchmark's unlearn stage


def unlearn_benchmark_forget_split(model, metadata: Mapping[str, Any], corpus, features, forget_split,
                                   method: MethodSpec, seed: int, budget_seconds: float | None = None,
                                   budget_steps: int | None = None) -> Applied:
    """A benchmark split applied to an Original: its own retain set (minus anything the checkpoint's
    history forgot), the Original's recipe, the budget the grid derived from Retrain (none for the
    grid's Retrain itself, which is the method `retrain` applied here too)."""
    from .history import earlier_requests

    earlier = earlier_requests(metadata, corpus, "the Original")
    budget = BudgetChoice(budget_seconds, "the Retrain's wall time" if budget_seconds else "no cap")
    return apply(model, corpus, features, forget_split.forget_indices(corpus), method, budget, seed=seed, earlier=earlier,
                 train_config=train_config_of(metadata), retain=forget_split.retain_indices(corpus),
                 budget_steps=budget_steps, feature_spec=feature_spec_of(metadata))  # fmt: skip


def benchmark_metadata(metadata: Mapping[str, Any], corpus, forget_split, applied: Applied,
                       parent_sha256: str | None) -> dict[str, Any]:
    """An unlearned benchmark model's metadata, in the one history format."""
    from .history import earlier_requests

    entry = history_entry(tool="bench", splits=[forget_split], result=applied.result, budget=applied.budget,
                          parent_sha256=parent_sha256, kinds=[forget_split.kind],
                          details={"weights_changed": applied.weights_changed})  # fmt: skip
    return with_entry(metadata, corpus, earlier_requests(metadata, corpus, "the Original"), [forget_split], entry)
