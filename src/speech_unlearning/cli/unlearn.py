"""`speech-unlearn unlearn`: apply one unlearning method to a checkpoint and save the result.

    speech-unlearn unlearn --checkpoint runs/kws-original --method salun --forget-class yes \\
        --out runs/kws-salun-yes
    speech-unlearn unlearn --checkpoint runs/kws-original --method scrub+superloss \\
        --forget-ratio 0.05 --seed 1 --set lr=1e-3 --set superloss_on=both --out runs/kws-scrub

The same path as `forget` without verification or audit (speech_unlearning/forgetting). The
checkpoint's metadata names its corpus, labels and features, so the same data is rebuilt (a
corpus whose fingerprint differs is refused unless --allow-other-corpus). The forget request
becomes a split, saved inside the output (`OUT/split.json`); the retain set is the training set
minus this request and minus every request already applied to the checkpoint (its history,
written by `forget`, `unlearn` or the benchmark), so sequential requests never bring forgotten
data back. Every argument and --out (new, empty, a checkpoint of ours, or --overwrite; writable,
with room) are checked before any data is loaded; the input checkpoint is only read.
The time budget defaults to 10 % of the original model's recorded training time;
`--budget-seconds none` lifts it.

Exit codes: 0 done; 2 bad request or argument (nothing written); 3 I/O or internal error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import parse_overrides

SUBSET_LABELS = {"forget": "Df (forget)", "retain": "Dr (retain)", "test": "Dtest"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "unlearn",
        help="remove recordings, a keyword or a speaker from a checkpoint with one method",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint folder to unlearn from (read only)")
    parser.add_argument(
        "--method", required=True, help="method name, optionally NAME+superloss (see `speech-unlearn methods`)"
    )
    request = parser.add_mutually_exclusive_group(required=True)
    request.add_argument(
        "--forget-ratio", type=float, metavar="R", help="forget a seeded random share R of the training set (0 < R < 1)"
    )
    request.add_argument(
        "--forget-class", action="append", metavar="WORD", help="forget every training item of this class (repeatable)"
    )
    request.add_argument(
        "--forget-speaker", action="append", metavar="ID",
        help="forget every training recording of this speaker (repeatable)",
    )
    request.add_argument(
        "--forget-split", type=Path, metavar="FILE", help="forget the items of a saved split JSON file"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the method (and of --forget-ratio's draw) (default: 0)"
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a method setting, repeatable (keys per method: `speech-unlearn methods`)",
    )
    parser.add_argument(
        "--budget-seconds", default="auto", metavar="S",
        help="stop the method after S seconds; 'auto' (default): 10 %% of the original's recorded training time; "
        "'none': no cap",
    )
    parser.add_argument(
        "--out", required=True, type=Path,
        help="folder for the unlearned checkpoint and its split.json (built atomically); an existing folder that is "
        "not a checkpoint of ours is refused unless --overwrite",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out even if it holds other files")
    parser.add_argument(
        "--allow-other-corpus", action="store_true",
        help="accept a corpus whose fingerprint differs from the one the checkpoint was trained on",
    )
    parser.add_argument("--device", default="auto", help="auto (GPU if present) | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument(
        "--cache-dir", type=Path, default=None,
        help="cache for corpora and features (default: $SPEECH_UNLEARNING_CACHE or ~/.cache/speech_unlearning)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(handler=run)


def options_from_args(args: argparse.Namespace):
    """Validate every argument and --out; raises naming the bad one, before any data is loaded."""
    from ..forgetting.apply import MethodSpec
    from ..forgetting.deletion import UnlearnOptions, check_unlearn_output

    method = MethodSpec.parse(args.method, parse_overrides(args.overrides))
    if not args.checkpoint.is_dir():
        raise FileNotFoundError(f"--checkpoint {args.checkpoint}: no such checkpoint folder")
    check_unlearn_output(args.out, args.checkpoint, args.overwrite)
    if not 0 <= args.seed < 2**32:
        raise ValueError(f"--seed {args.seed}: must be in [0, 2**32)")
    seconds, lifted = budget_from_arg(args.budget_seconds)
    return UnlearnOptions(
        checkpoint=args.checkpoint, out=args.out, request=split_request(args), method=method,
        budget_seconds=seconds, budget_lifted=lifted, seed=args.seed, device=args.device,
        cache_dir=args.cache_dir, allow_other_corpus=args.allow_other_corpus, progress=not args.no_progress,
    )  # fmt: skip


def split_request(args: argparse.Namespace):
    from ..forgetting.request import UnlearnRequest

    if args.forget_ratio is not None:
        return UnlearnRequest("ratio", ratio=args.forget_ratio)
    if args.forget_class:
        return UnlearnRequest("classes", names=tuple(args.forget_class))
    if args.forget_speaker:
        return UnlearnRequest("speakers", names=tuple(args.forget_speaker))
    return UnlearnRequest("split_file", path=args.forget_split)


def budget_from_arg(text: str) -> tuple[float | None, bool]:
    """(seconds given, cap lifted): 'auto' -> (None, False), 'none' -> (None, True), S > 0 -> (S, False)."""
    value = text.strip().lower()
    if value in ("auto", "none"):
        return None, value == "none"
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"--budget-seconds {text!r}: expected a number of seconds, 'auto' or 'none'") from None
    if not seconds > 0:
        raise ValueError(f"--budget-seconds {text!r}: must be positive")
    return seconds, False


def run(args: argparse.Namespace) -> int:
    from ..forgetting.deletion import FORGET_SPLIT_FILE, run_unlearn

    options = options_from_args(args)
    print(f"{options.method.name}: unlearning from {options.checkpoint} ({options.request.kind} request)",
          file=sys.stderr)
    outcome = run_unlearn(options)
    print_summary(options, outcome)
    print(f"split: {options.out / FORGET_SPLIT_FILE}")
    print(f"checkpoint: {options.out}")
    return 0


def print_summary(options, outcome) -> None:
    result, applied = outcome.applied.result, outcome.applied
    ending = "schedule complete"
    if result.budget_exhausted:
        ending = "budget reached"
    elif result.diverged:
        ending = "diverged, kept the last finite weights"
    print(f"{result.name}: {result.steps} step(s) in {result.seconds:.2f} s ({ending}); budget "
          f"{applied.budget.to_dict()['seconds']} s ({applied.budget.source})")
    print(f"forgot {len(applied.forget)} item(s), retained {len(applied.retain)}"
          + ("" if applied.weights_changed else "; the weights did not change"))
    print(f"{'accuracy':<24}{'before':>10}{'after':>10}")
    for name, after in outcome.accuracy_after.items():
        before = outcome.accuracy_before[name]
        label = SUBSET_LABELS.get(name, f"Dtest {name[len('test_'):].replace('_', ' ')}")
        print(f"{label:<24}{_cell(before)}{_cell(after)}")


def _cell(value) -> str:
    return f"{'-':>10}" if value is None else f"{value:>10.4f}"
