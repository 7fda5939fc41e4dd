"""`speech-unlearn forget`: apply a deletion request to a deployed checkpoint, verify it, audit it.

    speech-unlearn forget --checkpoint runs/kws --out runs/kws-req42 --speaker jackson
    speech-unlearn forget --checkpoint runs/kws --out runs/kws-req43 --keyword 3 --method neggrad+
    speech-unlearn forget --checkpoint runs/kws --out runs/kws-req44 --files list.txt --dry-run
    speech-unlearn forget --checkpoint runs/kws-req42 --out runs/kws-req45 --request request.yaml

Steps: (1) resolve the request to training recordings and show what was found (counts per
kind, class and speaker); unknown ids, recordings outside the training set, paths outside the
corpus root, an empty request and a whole-dataset request are refused (exit 2) before anything
is written; --dry-run stops here. (2) Unlearn them with the chosen method within the time
budget (default: 10 % of the Original's recorded training time). (3) Verify against acceptance
thresholds. (4) Write --out: the new checkpoint and split.json (only on pass or
nothing-to-forget, or with --keep-failed, marked as failed) and the audit report audit.json / audit.md (always). The
--checkpoint folder is only read, never modified; --out must be new or empty (or --overwrite),
writable and with room for the checkpoint, which is checked before any compute.

Verdicts and exit codes: pass (0); nothing-to-forget (0: the weights changed and every check
passed, but the model before unlearning already met every check too, so the checks cannot show
forgetting); fail (1); no-op (1: the weights did not change, never a pass); a bad request or
argument exits 2 (nothing written), an I/O or internal error 3.

Verification (--threshold KEY=VALUE; points are percentage points): the accuracy on the forgotten
items must be near its target (forget_tolerance_pp): chance (1 / classes; lower passes) for a
keyword, or a speaker in speaker ID; for recordings whose labels stay in use (files, a speaker in
kws) the model's accuracy before unlearning on unseen speakers, since a retrained model still
recognises their keywords. The loss membership attack must be near 0.5 (mia_tolerance_pp).
Each forgetting tolerance widens by noise_z standard errors of a rate measured on the check's
number of recordings (15 recordings cannot tell 60 % from 50 %).
Dtest accuracy on the classes still served may drop by at most max_test_drop_pp, the remaining
classes' mean accuracy and the other speakers' accuracy by at most max_remaining_drop_pp. With
--verify-retrain, a model retrained on the retain set gives the forgetting targets instead; with
--retrain-seeds K, K of them: the targets are their mean, and each tolerance widens to twice
their standard deviation when that is larger (a Retrain of another seed lands anywhere in it).

A request YAML (--request) may hold: id, reason, speakers, keywords, files, files_from. The
request id defaults to a hash of the names asked for (not of the reason).
Each check reports how many recordings it rests on and a 95 % interval; a forgetting check on
fewer than min_check_items recordings says "not enough recordings" instead of pass or fail.
Requests chain: pass an unlearned checkpoint as --checkpoint; the items of earlier requests
(recorded in its history, by forget, unlearn or the benchmark) stay out of the retain set and are
checked again, against the thresholds they were accepted with.

--method auto: runs the method the benchmark found best for the request's scenario (files ->
sample, keyword -> class, speaker -> speaker in kws / class in sid; a mix: the first of class,
speaker, sample) and the checkpoint's task:
the lowest mean Avg. Gap to Retrain on validation forget splits, among configurations that fit
the budget and changed the model. By default from the table shipped in
speech_unlearning/forgetting/method_choice.json (its "provenance" says which benchmark it came
from; built for the default budget, 10 % of the training time); with --auto-from RUN_DIR, from
the tuning runs of your own `speech-unlearn bench --tune` results (RUN_DIR/runs.sqlite:
validation forget splits, never the reported test figures), among configurations whose tuning
time was within this request's budget (--budget-seconds over the recorded training time, else
10 %), preferring runs of the checkpoint's backbone; the chosen configuration's tuned settings
come with it. --auto-from RUN_DIR --export-choice FILE writes such a table (the shipped file's
format; --max-time-ratio, default 0.1) and exits.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..config import ConfigError, describe_fields, from_mapping, parse_overrides
from ..data.corpus import default_cache_dir


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
        "--allow-other-corpus", action="store_true",
        help="accept --data whose fingerprint differs from the one the checkpoint was trained on",
    )  # fmt: skip
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
        "--max-time-ratio", type=float, metavar="R",
        help="with --export-choice: keep configurations whose tuning time was at most R x Retrain's (default: "
             "0.1, forget's default budget); when applying, --auto-from keeps those within the request's budget",
    )  # fmt: skip
    group.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="method hyper-parameter, repeatable (see `speech-unlearn methods`)",
    )  # fmt: skip
    group.add_argument(
        "--budget-seconds", type=float,
        help="wall-time cap of the unlearning (default: 10 %% of the training time recorded in the checkpoint, "
        "if any); the audit says when it cut the run short",
    )  # fmt: skip
    group.add_argument(
        "--seed", type=int, default=0, help="seed of the unlearning, the retrained reference and the attacks (default: 0)"
    )
    group.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")


def add_verification_options(group) -> None:
    from ..forgetting.acceptance import AcceptanceThresholds

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
        "--retrain-seeds", type=int, default=1, metavar="K",
        help="with --verify-retrain: retrain K references with seeds SEED..SEED+K-1; the targets are their mean and "
        "the tolerances widen to twice their standard deviation when that is larger (default: 1)",
    )  # fmt: skip
    group.add_argument(
        "--keep-failed", action="store_true",
        help="write the checkpoint even when verification fails (its metadata marks it as failed)",
    )  # fmt: skip


# --- arguments -> options (checked before anything is loaded) --------------------------------

AUDIT_ONLY_MARKER = "audit.json"  # an --out folder of a failed request holds this and no checkpoint
SHOWN_NAMES = 12  # names per line of the dry run; longer lists wrap


def request_from_args(args: argparse.Namespace):
    """The DeletionRequest of the command line or of --request (not both)."""
    from ..forgetting.request import DeletionRequest, load_request_file, read_item_list

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


def options_from_args(args: argparse.Namespace):
    """Validate every argument; raises naming the bad one, before any data is touched or written."""
    from ..forgetting.apply import MethodSpec
    from ..forgetting.deletion import ForgetOptions
    from ..forgetting.output import check_output
    from ..forgetting.acceptance import AcceptanceThresholds

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
    if args.max_time_ratio is not None:
        raise ValueError("--max-time-ratio applies to --export-choice only; when applying a request, --auto-from "
                         "keeps the configurations within its budget (--budget-seconds)")
    if args.retrain_seeds < 1 or (args.retrain_seeds > 1 and not args.verify_retrain):
        raise ValueError(f"--retrain-seeds {args.retrain_seeds}: must be at least 1, and above 1 only with "
                         "--verify-retrain")
    if args.budget_seconds is not None and not args.budget_seconds > 0:
        raise ValueError(f"--budget-seconds {args.budget_seconds}: must be positive")
    thresholds = from_mapping(AcceptanceThresholds, parse_overrides(args.threshold, "--threshold"), where="--threshold")
    overrides = parse_overrides(args.overrides)
    if args.method != "auto":
        MethodSpec.parse(args.method, overrides)
    if args.out is not None:
        check_output(args.out, args.checkpoint, args.overwrite)
    table, source = choice_table(args)
    return ForgetOptions(
        checkpoint=args.checkpoint, out=args.out, request=request_from_args(args), thresholds=thresholds,
        method=args.method, overrides=overrides, budget_seconds=args.budget_seconds, seed=args.seed,
        device=args.device, data_spec=args.data, cache_dir=args.cache_dir or default_cache_dir(),
        ignore_unknown=args.ignore_unknown, verify_retrain=args.verify_retrain, retrain_seeds=args.retrain_seeds,
        keep_failed=args.keep_failed,
        allow_other_corpus=args.allow_other_corpus, progress=not args.no_progress, choice_table=table,
        choice_source=source,
    )  # fmt: skip


def choice_table(args: argparse.Namespace):
    """(table, its description) for --auto-from, else (None, None): the shipped table."""
    if args.method != "auto" or args.auto_from is None:
        return None, None
    from ..experiments.choice_table import choice_table_from_runs
    from ..models.checkpoint import read_metadata

    from ..forgetting.history import budget_share

    metadata = read_metadata(args.checkpoint)
    model = (metadata.get("model") or {}).get("name")
    # A configuration that needed more of Retrain's time in tuning than the request's budget allows
    # would be cut short; the tuning Retrain stands in for the checkpoint's recorded training time.
    share = budget_share(metadata, args.budget_seconds)
    if share is None:  # no recorded training time: the table's own limit, Retrain's time
        return choice_table_from_runs(args.auto_from, model=model), f"benchmark runs {args.auto_from}"
    table = choice_table_from_runs(args.auto_from, model=model, max_time_ratio=share)
    return table, f"benchmark runs {args.auto_from} (within the budget, {share:.3g} x the training time)"


# --- printing ---------------------------------------------------------------------------------


def wrapped(label: str, items: list[str]) -> list[str]:
    """`label: a, b, c` over several lines of SHOWN_NAMES items (150 speakers do not fit on one)."""
    lines = []
    for start in range(0, len(items), SHOWN_NAMES):
        chunk = ", ".join(items[start:start + SHOWN_NAMES])
        lines.append(f"  {label}: {chunk}" if start == 0 else f"  {' ' * len(label)}  {chunk}")
    return lines or [f"  {label}: -"]


def print_resolution(prepared) -> None:
    resolution, corpus, choice = prepared.resolution, prepared.subject.corpus, prepared.choice
    request = resolution.request
    counts = resolution.counts(corpus)
    print(f"request {request.effective_id} (sha256 {request.sha256[:16]}...): "
          f"{counts['total']} training item(s) of {corpus.name} to forget")
    for component in resolution.components:
        names = ", ".join(component.names[:10]) + (" ..." if len(component.names) > 10 else "")
        print(f"  {component.kind}: {len(component.forget_ids)} item(s) from {names}")
    for line in wrapped("per class", [f"{name} {n}" for name, n in counts["per_class"].items()]):
        print(line)
    for line in wrapped("per speaker", [f"{name} {n}" for name, n in counts["per_speaker"].items()]):
        print(line)
    if counts["already_forgotten"]:
        print(f"  already forgotten by earlier requests (skipped): {counts['already_forgotten']}")
    for kind, n in resolution.overlaps.items():
        print(f"  {kind}: {n} item(s) already counted under another kind")
    for item in counts["ignored"]:
        print(f"  ignored (--ignore-unknown): {item}")
    for earlier in prepared.subject.earlier:
        print(f"  earlier request {earlier.request_id}: {len(earlier.forget_ids)} item(s) stay forgotten")
    where = f"{choice.source}, scenario {choice.scenario}" if choice.source != "user" else "given"
    settings = choice.detail.get("overrides")
    print(f"method: {choice.method}" + (f" with {settings}" if settings else "") + f" ({where})")


def print_verification(outcome) -> None:
    from ..forgetting.audit import interval_text, percent

    verification = outcome.verification
    for check in verification.checks:
        size = f", n = {check.n}" if check.n else ""
        print(f"  [{check.result[:7]:>7}] {check.name}: {percent(check.value)}{interval_text(check.interval)}, "
              f"target {percent(check.target)} ({check.target_source}; {check.rule}{size})")
    gap = (verification.gap_to_retrain or {}).get("avg_gap_pp")
    if gap is not None:
        print(f"Avg. Gap to the retrained reference: {gap:.2f} pp")
    result = outcome.applied.result
    budget = outcome.applied.budget
    cut = "; the budget cut it short" if result.budget_exhausted else ""
    print(f"unlearning: {result.seconds:.1f} s, budget {budget.to_dict()['seconds']} s ({budget.source}){cut}")
    if not outcome.applied.weights_changed:
        print("the weights did not change: nothing was unlearned")
    if verification.nothing_to_forget and verification.verdict != "nothing-to-forget":
        print("the model before unlearning already met every check: nothing measurable to forget")
    print(f"verdict: {verification.verdict}")


# --- the command ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from ..forgetting.deletion import exit_code, prepare, run_forget, write_forget_outputs

    if args.export_choice is not None:
        return export_choice(args)
    options = options_from_args(args)
    prepared = prepare(options)
    print_resolution(prepared)
    if args.dry_run:
        print("dry run: nothing unlearned, nothing written")
        return 0
    outcome = run_forget(options, prepared)
    print_verification(outcome)
    kept = write_forget_outputs(options, prepared, outcome)
    what = "checkpoint and audit" if kept else "audit only (verification did not pass; --keep-failed writes the checkpoint)"
    print(f"{what}: {options.out}")
    return exit_code(outcome.verification)


def export_choice(args: argparse.Namespace) -> int:
    from ..experiments.choice_table import EXPORT_MAX_TIME_RATIO, choice_table_from_runs
    from ..io import atomic_write_json

    if args.auto_from is None:
        raise ValueError("--export-choice needs --auto-from RUN_DIR (the benchmark run folder to read)")
    ratio = EXPORT_MAX_TIME_RATIO if args.max_time_ratio is None else args.max_time_ratio
    if not ratio > 0:
        raise ValueError(f"--max-time-ratio {args.max_time_ratio}: must be positive")
    table = choice_table_from_runs(args.auto_from, max_time_ratio=ratio)
    if not table["choices"]:
        raise ValueError(f"--auto-from {args.auto_from}: no finished tuning run of an unlearning method within "
                         f"{ratio:g} x Retrain's time that changed the model (try a larger --max-time-ratio)")
    atomic_write_json(args.export_choice, table)
    for task, scenarios in table["choices"].items():
        for scenario, entry in scenarios.items():
            print(f"{task} {scenario}: {entry['method']} (Avg. Gap {entry['avg_gap_pp']:.2f} pp over {entry['runs']} run(s))")
    print(f"method choice table: {args.export_choice}")
    return 0
