"""`speech-unlearn forget`: apply a deletion request to a deployed checkpoint, verify it, audit it.

    speech-unlearn forget --checkpoint runs/kws --out runs/kws-req42 --speaker jackson
    speech-unlearn forget --checkpoint runs/kws --out runs/kws-req43 --keyword 3 --method neggrad+
    speech-unlearn forget --checkpoint runs/kws --out runs/kws-req44 --files list.txt --dry-run
    speech-unlearn forget --checkpoint runs/kws-req42 --out runs/kws-req45 --request request.yaml

Steps: (1) resolve the request to training recordings and show what was found (counts per
kind, class and speaker); unknown ids, recordings outside the training set, paths outside the
corpus root, an empty request and a whole-dataset request are refused (exit 2) before anything
is written; --dry-run stops here. (2) Unlearn them with the chosen method within the time
budget. (3) Verify against acceptance thresholds (exit 0 = pass, 1 = fail). (4) Write --out:
the new checkpoint (only on pass, or with --keep-failed, marked as failed) and the audit report
audit.json / audit.md (always). The --checkpoint folder is only read, never modified.

Verification (--threshold KEY=VALUE; points are percentage points): the accuracy on the forgotten
items must be near its target (forget_tolerance_pp): chance (1 / classes; lower passes) for a
keyword, or a speaker in speaker ID; for recordings whose labels stay in use (files, a speaker in
kws) the model's accuracy before unlearning on unseen speakers, since a retrained model still
recognises their keywords. The loss membership attack must be near 0.5 (mia_tolerance_pp).
Dtest accuracy on the classes still served may drop by at most max_test_drop_pp, the remaining
classes' mean accuracy and the other speakers' accuracy by at most max_remaining_drop_pp. With
--verify-retrain, a model retrained on the retain set gives the forgetting targets instead.

A request YAML (--request) may hold: id, reason, speakers, keywords, files, files_from.
Requests chain: pass an unlearned checkpoint as --checkpoint; the items of earlier requests
(recorded in its history) stay out of the retain set and are checked again.

--method auto: runs the method the benchmark found best for the request's scenario (files ->
sample, keyword -> class, speaker -> speaker in kws / class in sid; a mix: the first of class,
speaker, sample) and the checkpoint's task:
the lowest mean Avg. Gap to Retrain among methods no slower than Retrain. By default from the
table shipped in speech_unlearning/experiments/method_choice.json (its "provenance" says which
benchmark it came from; the shipped defaults are documented placeholders until regenerated);
with --auto-from RUN_DIR, from your own `speech-unlearn bench` results (RUN_DIR/runs.sqlite),
preferring runs of the checkpoint's backbone. --auto-from RUN_DIR --export-choice FILE writes
such a table (the shipped file's format) and exits.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import ConfigError, describe_fields, from_mapping, parse_overrides, to_dict
from ..data.corpus import CorpusError, default_cache_dir, load_corpus


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "forget",
        help="apply a deletion request (speakers, keywords, files) to a checkpoint, verify it and write an audit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", type=Path, help="checkpoint folder of the deployed model (read only)")
    parser.add_argument("--out", type=Path, help="new folder for the unlearned checkpoint and audit.json / audit.md")
    parser.add_argument(
        "--data",
        metavar="CORPUS",
        help="corpus spec (e.g. fsdd:/data/fsdd); default: the spec recorded in the checkpoint. Its labels and "
        "feature spec must match the checkpoint's",
    )
    add_request_options(parser.add_argument_group("the request (at least one; --request excludes the others)"))
    add_method_options(parser.add_argument_group("unlearning"))
    add_verification_options(parser.add_argument_group("verification"))
    parser.add_argument("--dry-run", action="store_true", help="resolve and show the request, then stop (writes nothing)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists and is not empty")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="cache for corpora and features (default: $SPEECH_UNLEARNING_CACHE or ~/.cache/speech_unlearning)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(handler=run)


def add_request_options(group) -> None:
    group.add_argument(
        "--speaker", nargs="+", action="extend", default=[], metavar="ID",
        help="forget every training recording of these speakers",
    )  # fmt: skip
    group.add_argument(
        "--keyword", nargs="+", action="extend", default=[], metavar="WORD",
        help="forget these keywords (classes) entirely (kws only)",
    )  # fmt: skip
    group.add_argument(
        "--files", type=Path, metavar="LIST",
        help="text file of audio paths (inside the corpus root) or utterance ids, one a line; '#' starts a comment",
    )  # fmt: skip
    group.add_argument(
        "--request", type=Path, metavar="YAML", help="request file: id, reason, speakers, keywords, files, files_from"
    )
    group.add_argument(
        "--request-id", help="id recorded in the audit and history (default: the file's id, else req-<hash>)"
    )
    group.add_argument("--reason", default="", help="free-text reason recorded in the audit (not in the checkpoint)")
    group.add_argument(
        "--ignore-unknown", action="store_true",
        help="drop names that match no training item instead of failing (at least one must match)",
    )  # fmt: skip


def add_method_options(group) -> None:
    group.add_argument(
        "--method", default="auto",
        help="auto (see above) or a method name from `speech-unlearn methods` (default: auto)",
    )  # fmt: skip
    group.add_argument(
        "--auto-from", type=Path, metavar="RUN_DIR",
        help="for --method auto: choose from this benchmark run folder's results instead of the shipped table",
    )  # fmt: skip
    group.add_argument(
        "--export-choice", type=Path, metavar="FILE",
        help="with --auto-from: write the method-choice table (method_choice.json format) to FILE and exit",
    )  # fmt: skip
    group.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="method hyper-parameter, repeatable (see `speech-unlearn methods`)",
    )  # fmt: skip
    group.add_argument(
        "--budget-seconds", type=float,
        help="wall-time cap of the unlearning (default: the training time recorded in the checkpoint, if any)",
    )  # fmt: skip
    group.add_argument(
        "--seed", type=int, default=0, help="seed of the unlearning, the retrained reference and the attacks (default: 0)"
    )
    group.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")


def add_verification_options(group) -> None:
    from ..experiments.audit import AcceptanceThresholds

    keys = "; ".join(f"{name} (default {default})" for name, _, default, _ in describe_fields(AcceptanceThresholds))
    group.add_argument(
        "--threshold", action="append", default=[], metavar="KEY=VALUE",
        help=f"acceptance threshold, repeatable; keys: {keys}",
    )  # fmt: skip
    group.add_argument(
        "--verify-retrain", action="store_true",
        help="also retrain a reference on the retain set with the checkpoint's recipe; its values become the targets",
    )  # fmt: skip
    group.add_argument(
        "--keep-failed", action="store_true",
        help="write the checkpoint even when verification fails (its metadata marks it as failed)",
    )  # fmt: skip


# --- argument checks (before anything is loaded) --------------------------------------------


@dataclass(frozen=True)
class ForgetPlan:
    """A validated `forget` invocation."""

    checkpoint: Path
    out: Path | None  # None only for --dry-run
    request: Any  # experiments.requests.DeletionRequest
    thresholds: Any  # experiments.audit.AcceptanceThresholds
    overrides: dict[str, str]
    cache_dir: Path


AUDIT_ONLY_MARKER = "audit.json"  # an --out folder of a failed request holds this and no checkpoint


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output(checkpoint: Path, out: Path, overwrite: bool) -> None:
    """--out must be a new (or empty) folder, never the checkpoint itself or inside it."""
    if _is_within(out.resolve(), checkpoint.resolve()):
        raise ValueError(f"--out {out}: inside the --checkpoint folder, which is never modified; choose another folder")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out {out}: folder exists and is not empty (audits are not overwritten; pass --overwrite)")


def request_from_args(args: argparse.Namespace):
    """The DeletionRequest of the command line or of --request (not both)."""
    from ..experiments.requests import DeletionRequest, load_request_file, read_item_list

    if args.request is not None:
        if args.speaker or args.keyword or args.files:
            raise ConfigError("--request: give the whole request in the file, without --speaker / --keyword / --files")
        request = load_request_file(args.request)
        changes = {"request_id": args.request_id or request.request_id, "reason": args.reason or request.reason}
        return dataclasses.replace(request, **changes)
    files = read_item_list(args.files) if args.files is not None else []
    return DeletionRequest(
        speakers=tuple(args.speaker), keywords=tuple(args.keyword), files=tuple(files),
        request_id=args.request_id, reason=args.reason, source="command-line request",
    )  # fmt: skip


def plan_from_args(args: argparse.Namespace) -> ForgetPlan:
    """Validate every argument; raises naming the bad one, before any data is touched or written."""
    from ..experiments.audit import AcceptanceThresholds

    if args.checkpoint is None:
        raise ValueError("--checkpoint is required (only --auto-from with --export-choice runs without it)")
    if args.out is None and not args.dry_run:
        raise ValueError("--out is required (except with --dry-run)")
    if not args.checkpoint.is_dir():
        raise FileNotFoundError(f"--checkpoint {args.checkpoint}: no such checkpoint folder")
    if (args.checkpoint / AUDIT_ONLY_MARKER).is_file() and not (args.checkpoint / "metadata.json").is_file():
        raise ValueError(
            f"--checkpoint {args.checkpoint}: holds only the audit of a request that failed verification, no "
            "checkpoint (apply it again with other thresholds or a method that passes, or with --keep-failed)"
        )
    if args.auto_from is not None and args.method != "auto":
        raise ValueError(f"--auto-from applies to --method auto, not --method {args.method}")
    if args.budget_seconds is not None and not args.budget_seconds > 0:
        raise ValueError(f"--budget-seconds {args.budget_seconds}: must be positive")
    thresholds = from_mapping(AcceptanceThresholds, parse_overrides(args.threshold, "--threshold"), where="--threshold")
    overrides = parse_overrides(args.overrides)
    if args.method != "auto":
        check_method(args.method, overrides)
    if args.out is not None:
        check_output(args.checkpoint, args.out, args.overwrite)
    cache_dir = args.cache_dir or default_cache_dir()
    return ForgetPlan(args.checkpoint, args.out, request_from_args(args), thresholds, overrides, cache_dir)


def check_method(name: str, overrides: dict[str, str]) -> None:
    """Unknown method names and hyper-parameters fail here, listing the valid ones."""
    from ..methods import parse_method_config, split_method_name

    method_class, superloss = split_method_name(name)
    parse_method_config(method_class, superloss, overrides, name)


# --- loading and resolving ------------------------------------------------------------------


@dataclass
class Inputs:
    """The checkpoint, its corpus, the earlier requests it applied, and this request resolved."""

    model: Any
    metadata: dict
    corpus: Any
    corpus_spec: str
    earlier: list  # experiments.requests.EarlierRequest
    resolution: Any  # experiments.requests.Resolution
    choice: Any  # experiments.requests.MethodChoice

    @property
    def earlier_splits(self) -> list[tuple[str, Any]]:
        """(request id, split) of every component of every earlier request."""
        return [(request.request_id, split) for request in self.earlier for split in request.splits]


def load_checkpoint_and_corpus(args: argparse.Namespace, plan: ForgetPlan):
    """(model, metadata, corpus, corpus spec): the checkpoint checked against the corpus it is used with."""
    from ..data.features import feature_spec_for
    from ..models.checkpoint import load_checkpoint, read_metadata

    metadata = read_metadata(plan.checkpoint)
    recorded = metadata.get("corpus") or {}
    spec = args.data or recorded.get("spec")
    if not spec:
        raise CorpusError(f"checkpoint {plan.checkpoint} does not record its corpus spec; pass --data SPEC")
    if recorded.get("task") not in ("kws", "sid"):
        raise CorpusError(f"checkpoint {plan.checkpoint} does not record its task (kws or sid)")
    corpus = load_corpus(spec, recorded["task"], cache_dir=plan.cache_dir)
    kind = (metadata.get("feature_spec") or {}).get("kind", "logmel")
    model, metadata = load_checkpoint(
        plan.checkpoint, expect_label_names=corpus.label_names, expect_feature_spec=feature_spec_for(corpus, kind)
    )
    return model, metadata, corpus, spec


def prepare(args: argparse.Namespace, plan: ForgetPlan) -> Inputs:
    """Load, resolve the request against the corpus, and choose the method (no compute, no writes)."""
    from ..experiments.requests import choose_method, earlier_requests, resolve_request

    model, metadata, corpus, spec = load_checkpoint_and_corpus(args, plan)
    earlier = earlier_requests(metadata, corpus, f"checkpoint {plan.checkpoint}")
    earlier_ids = {i for request in earlier for i in request.forget_ids}
    resolution = resolve_request(corpus, plan.request, earlier_ids, ignore_unknown=args.ignore_unknown)
    model_name = (metadata.get("model") or {}).get("name")
    choice = choose_method(args.method, corpus.task, resolution.kinds, auto_from=args.auto_from, model=model_name)
    check_method(choice.method, choice.overrides(plan.overrides))
    return Inputs(model, metadata, corpus, spec, earlier, resolution, choice)


# --- reporting to the terminal ---------------------------------------------------------------


def print_resolution(inputs: Inputs) -> None:
    resolution, corpus, choice = inputs.resolution, inputs.corpus, inputs.choice
    request = resolution.request
    counts = resolution.counts(corpus)
    print(f"request {request.effective_id} (sha256 {request.sha256[:16]}...): "
          f"{counts['total']} training item(s) of {corpus.name} to forget")
    for component in resolution.components:
        names = ", ".join(component.names[:10]) + (" ..." if len(component.names) > 10 else "")
        print(f"  {component.kind}: {len(component.forget_ids)} item(s) from {names}")
    print("  per class: " + ", ".join(f"{name} {n}" for name, n in counts["per_class"].items()))
    print("  per speaker: " + ", ".join(f"{name} {n}" for name, n in counts["per_speaker"].items()))
    if counts["already_forgotten"]:
        print(f"  already forgotten by earlier requests (skipped): {counts['already_forgotten']}")
    for kind, n in resolution.overlaps.items():
        print(f"  {kind}: {n} item(s) already counted under another kind")
    for item in counts["ignored"]:
        print(f"  ignored (--ignore-unknown): {item}")
    for request in inputs.earlier:
        print(f"  earlier request {request.request_id}: {len(request.forget_ids)} item(s) stay forgotten")
    where = f"{choice.source}, scenario {choice.scenario}" if choice.source != "user" else "given"
    settings = choice.detail.get("overrides")
    print(f"method: {choice.method}" + (f" with {settings}" if settings else "") + f" ({where})")


def print_verification(verification) -> None:
    from ..experiments.audit import percent

    for check in verification.checks:
        result = {True: "pass", False: "FAIL", None: "not run"}[check.passed]
        print(f"  [{result:>7}] {check.name}: {percent(check.value)}, target {percent(check.target)} "
              f"({check.target_source}; {check.rule})")
    gap = (verification.gap_to_retrain or {}).get("avg_gap_pp")
    if gap is not None:
        print(f"Avg. Gap to the retrained reference: {gap:.2f} pp")
    print(f"verdict: {verification.verdict}")


# --- the command ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    if args.export_choice is not None:
        return export_choice(args)
    started = time.perf_counter()
    plan = plan_from_args(args)
    inputs = prepare(args, plan)
    print_resolution(inputs)
    if args.dry_run:
        print("dry run: nothing unlearned, nothing written")
        return 0
    outcome = apply_request(args, plan, inputs)
    print_verification(outcome.verification)
    write_outputs(args, plan, inputs, outcome, started)
    if checkpoint_sha(plan.checkpoint) != outcome.before_sha:  # never expected: the input is only read
        raise RuntimeError(f"--checkpoint {plan.checkpoint} changed while the request was applied")
    return 0 if outcome.verification.verdict == "pass" else 1


def export_choice(args: argparse.Namespace) -> int:
    from ..experiments.requests import choice_table_from_runs
    from ..io import atomic_write_json

    if args.auto_from is None:
        raise ValueError("--export-choice needs --auto-from RUN_DIR (the benchmark run folder to read)")
    table = choice_table_from_runs(args.auto_from)
    if not table["choices"]:
        raise ValueError(f"--auto-from {args.auto_from}: no finished evaluation of an unlearning method to choose from")
    atomic_write_json(args.export_choice, table)
    for task, scenarios in table["choices"].items():
        for scenario, entry in scenarios.items():
            print(f"{task} {scenario}: {entry['method']} (Avg. Gap {entry['avg_gap_pp']:.2f} pp over {entry['runs']} run(s))")
    print(f"method choice table: {args.export_choice}")
    return 0


def checkpoint_sha(folder: Path) -> str:
    from ..models.checkpoint import checkpoint_sha256

    return checkpoint_sha256(folder)


@dataclass
class Outcome:
    """What applying the request produced."""

    result: Any  # methods.UnlearnResult
    budget: float | None
    verification: Any  # experiments.audit.Verification
    before_sha: str


def apply_request(args: argparse.Namespace, plan: ForgetPlan, inputs: Inputs) -> Outcome:
    """Unlearn the request's items (retain set: training set minus this and every earlier request),
    optionally retrain a reference, and verify."""
    import numpy as np

    from ..data.features import FeatureSpec, load_features
    from ..experiments.audit import verify_request
    from ..training.loop import select_device

    corpus, metadata = inputs.corpus, inputs.metadata
    before_sha = checkpoint_sha(plan.checkpoint)
    spec = FeatureSpec(**metadata["feature_spec"])
    features = load_features(corpus, spec, cache_dir=plan.cache_dir, progress=not args.no_progress)
    earlier = [split.forget_indices(corpus) for _, split in inputs.earlier_splits]
    forgotten = np.union1d(inputs.resolution.forget_positions(corpus), np.concatenate([np.zeros(0, np.int64), *earlier]))
    retain = np.setdiff1d(corpus.indices("train"), forgotten)
    device = select_device(args.device)
    model = inputs.model.to(device)
    recorded = (metadata.get("metrics") or {}).get("train_seconds")
    budget = args.budget_seconds if args.budget_seconds is not None else recorded
    result = run_method(args, plan, inputs, model, features, retain, budget)
    models = {"before": model, "after": result.model}
    if args.verify_retrain:
        models["retrained"] = retrain_reference(args, plan, inputs, retain).to(device)
    verification = verify_request(models, features, corpus, inputs.resolution.splits(corpus), inputs.earlier_splits,
                                  retain, plan.thresholds, seed=args.seed)  # fmt: skip
    return Outcome(result, budget, verification, before_sha)


def run_method(args, plan: ForgetPlan, inputs: Inputs, model, features, retain, budget):
    from ..methods import unlearn
    from ..training.data import ArrayData

    corpus = inputs.corpus
    return unlearn(
        inputs.choice.method, model, ArrayData(features, corpus.labels, inputs.resolution.forget_positions(corpus)),
        ArrayData(features, corpus.labels, retain), overrides=inputs.choice.overrides(plan.overrides),
        budget_seconds=budget, seed=args.seed,
        validation=ArrayData(features, corpus.labels, corpus.indices("validation")),
        train_config=train_config_of(inputs.metadata), progress=not args.no_progress,
    )  # fmt: skip


def train_config_of(metadata: dict):
    """The checkpoint's TrainConfig (None when it records none)."""
    from ..training.loop import TrainConfig

    stored = metadata.get("train_config")
    return from_mapping(TrainConfig, stored, where="checkpoint train_config") if stored else None


def retrain_reference(args, plan: ForgetPlan, inputs: Inputs, retain):
    """A model trained from scratch on the retain set with the checkpoint's recipe (--verify-retrain)."""
    from ..training.recipes import train_original

    config = train_config_of(inputs.metadata)
    if config is None:
        raise ValueError("--verify-retrain: the checkpoint records no train_config to retrain with")
    build_args = inputs.metadata["model"]
    print(f"retraining a reference {build_args['name']} on {len(retain)} retained item(s)", file=sys.stderr)
    if callable(getattr(inputs.model, "starting_point", None)):
        return retrain_from_starting_point(args, plan, inputs, retain, config)
    model, _, _ = train_original(
        inputs.corpus, build_args["name"], args.seed, cache_dir=plan.cache_dir,
        config=dataclasses.replace(config, device=args.device), train_indices=retain,
        progress=not args.no_progress, model_options=build_args.get("options") or {},
    )  # fmt: skip
    return model


def retrain_from_starting_point(args, plan: ForgetPlan, inputs: Inputs, retain, config):
    """An imported model's reference: the Retrain method, which starts from the starting point the
    import recorded (not random weights: the model was usually fine-tuned from a pretrained one)."""
    from ..data.features import FeatureSpec, load_features
    from ..methods import unlearn
    from ..training.data import ArrayData

    corpus = inputs.corpus
    features = load_features(corpus, FeatureSpec(**inputs.metadata["feature_spec"]), cache_dir=plan.cache_dir,
                             progress=False)  # fmt: skip
    result = unlearn(
        "retrain", inputs.model, ArrayData(features, corpus.labels, inputs.resolution.forget_positions(corpus)),
        ArrayData(features, corpus.labels, retain), seed=args.seed, train_config=config,
        validation=ArrayData(features, corpus.labels, corpus.indices("validation")), progress=not args.no_progress,
    )  # fmt: skip
    return result.model


# --- outputs ----------------------------------------------------------------------------------


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def history_entry(inputs: Inputs, outcome: Outcome) -> dict[str, Any]:
    """What the new checkpoint's history records about this request (not the free-text reason)."""
    resolution, corpus, result = inputs.resolution, inputs.corpus, outcome.result
    counts = resolution.counts(corpus)
    return {
        "request_id": resolution.request.effective_id,
        "request_sha256": resolution.request.sha256,
        "kinds": list(resolution.kinds),
        "counts": {"total": counts["total"], "per_kind": counts["per_kind"]},
        "method": result.name,
        "config": result.config_dict(),
        "seed": result.seed,
        "seconds": result.seconds,
        "budget_seconds": outcome.budget,
        "budget_exhausted": result.budget_exhausted,
        "verdict": outcome.verification.verdict,
        "timestamp": utc_now(),
        "parent_sha256": outcome.before_sha,
        "splits": [split.to_dict() for split in resolution.splits(corpus)],
    }


def new_metadata(inputs: Inputs, outcome: Outcome) -> dict[str, Any]:
    """The unlearned checkpoint's metadata: the input's, with the cumulative split, history and verdict."""
    from ..experiments.requests import merge_splits

    corpus, metadata, verification = inputs.corpus, inputs.metadata, outcome.verification
    entry = history_entry(inputs, outcome)
    splits = [split for _, split in inputs.earlier_splits] + inputs.resolution.splits(corpus)
    return {
        **metadata,
        "corpus": {**(metadata.get("corpus") or {}), "spec": inputs.corpus_spec, "fingerprint": corpus.fingerprint},
        "split": merge_splits(corpus, splits).to_dict(),
        "history": [*(metadata.get("history") or []), entry],
        "verification": {
            "request_id": entry["request_id"],
            "verdict": verification.verdict,
            "failed_verification": verification.verdict != "pass",
            "failed_checks": [check.name for check in verification.failed],
            "thresholds": to_dict(verification.thresholds),
        },
    }


def write_outputs(args: argparse.Namespace, plan: ForgetPlan, inputs: Inputs, outcome: Outcome, started: float) -> None:
    """Build --out atomically: the checkpoint (on pass or with --keep-failed) and, always, the audit."""
    from ..experiments.audit import write_audit
    from ..io import atomic_directory
    from ..models.checkpoint import save_checkpoint

    keep = outcome.verification.verdict == "pass" or args.keep_failed
    with atomic_directory(plan.out) as building:
        after = None
        if keep:
            save_checkpoint(building, outcome.result.model.cpu(), new_metadata(inputs, outcome))
            after = {"path": str(plan.out.resolve()), "sha256": checkpoint_sha(building)}
        write_audit(building, build_audit(plan, inputs, outcome, after, started))
    kept = "checkpoint and audit" if keep else "audit only (verification failed; --keep-failed writes the checkpoint)"
    print(f"{kept}: {plan.out}")


def build_audit(plan: ForgetPlan, inputs: Inputs, outcome: Outcome, after: dict | None, started: float) -> dict[str, Any]:
    """audit.json: the request, its items' file hashes, checkpoints, method, metrics, checks, verdict."""
    from ..experiments.audit import AUDIT_SCHEMA_VERSION, forgotten_item_records, software_versions

    resolution, corpus, result, verification = inputs.resolution, inputs.corpus, outcome.result, outcome.verification
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
        "corpus": {"name": corpus.name, "task": corpus.task, "fingerprint": corpus.fingerprint, "spec": inputs.corpus_spec},
        "checkpoints": {"before": {"path": str(plan.checkpoint.resolve()), "sha256": outcome.before_sha}, "after": after},
        "method": {"name": result.name, "choice": inputs.choice.to_dict(), "config": result.config_dict(),
                   "seed": result.seed, "seconds": result.seconds, "steps": result.steps, "budget_seconds": outcome.budget,
                   "budget_exhausted": result.budget_exhausted, "diverged": result.diverged},
        "software": software_versions(),
        "metrics": verification.metrics,
        "gap_to_retrain": verification.gap_to_retrain,
        "thresholds": to_dict(verification.thresholds),
        "checks": [check.to_dict() for check in verification.checks],
        "failed_checks": [check.name for check in verification.failed],
        "verdict": verification.verdict,
        "earlier_requests": [{"request_id": e.request_id, "request_sha256": e.request_sha256,
                              "n_items": len(e.forget_ids)} for e in inputs.earlier],
        "notes": verification.notes,
        "wall_seconds": time.perf_counter() - started,
    }
