"""`speech-unlearn unlearn`: apply one unlearning method to a checkpoint and save the result.

    speech-unlearn unlearn --checkpoint runs/kws-original --method salun --forget-class yes \\
        --out runs/kws-salun-yes
    speech-unlearn unlearn --checkpoint runs/kws-original --method scrub+superloss \\
        --forget-ratio 0.05 --seed 1 --set lr=1e-3 --set superloss_on=both --out runs/kws-scrub

The checkpoint's metadata names its corpus, labels and features, so the same data is rebuilt.
The forget request becomes a split, saved as JSON next to the output (`OUT.split.json`); the
retain set is the training set minus this request and minus every request already applied to
the checkpoint (its `history`), so sequential requests never bring forgotten data back.
Every argument is checked before any data is loaded; the input checkpoint is only read.
The time budget defaults to the original model's recorded training time, a stand-in for
Retrain's (which trains on less data); `--budget-seconds none` lifts it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError, parse_overrides

SPLIT_SUFFIX = ".split.json"
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
        help="stop the method after S seconds; 'auto' (default): the original's recorded training time; 'none': no cap",
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="folder for the unlearned checkpoint (replaced atomically)"
    )
    parser.add_argument("--device", default="auto", help="auto (GPU if present) | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument(
        "--cache-dir", type=Path, default=None,
        help="cache for corpora and features (default: $SPEECH_UNLEARNING_CACHE or ~/.cache/speech_unlearning)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(handler=run)


@dataclass(frozen=True)
class UnlearnPlan:
    """A fully validated `unlearn` request."""

    checkpoint: Path
    metadata: dict
    method: str
    overrides: dict[str, str]
    request: tuple[str, Any]  # ("ratio", 0.05) | ("class", [...]) | ("speaker", [...]) | ("split", Path)
    seed: int
    budget_seconds: float | None
    out: Path
    device: str
    cache_dir: Path | None
    progress: bool

    @property
    def split_path(self) -> Path:
        return self.out.parent / (self.out.name + SPLIT_SUFFIX)


def plan_from_args(args: argparse.Namespace) -> UnlearnPlan:
    """Validate every argument (and the checkpoint's metadata); raises naming the bad one."""
    from ..methods import parse_method_config, split_method_name
    from ..models.checkpoint import CheckpointError, read_metadata

    method_class, with_superloss = split_method_name(args.method)
    overrides = parse_overrides(args.overrides)
    parse_method_config(method_class, with_superloss, overrides, args.method)
    metadata = read_metadata(args.checkpoint)
    corpus = metadata.get("corpus") or {}
    if not corpus.get("spec") or not corpus.get("task"):
        raise CheckpointError(
            f"checkpoint {args.checkpoint}: metadata has no corpus spec/task to rebuild the data from"
        )
    for key in ("label_names", "feature_spec"):
        if key not in metadata:
            raise CheckpointError(f"checkpoint {args.checkpoint}: metadata lacks {key!r}")
    check_output_path(args.out, args.checkpoint)
    if not 0 <= args.seed < 2**32:
        raise ValueError(f"--seed {args.seed}: must be in [0, 2**32)")
    return UnlearnPlan(
        checkpoint=args.checkpoint,
        metadata=metadata,
        method=args.method,
        overrides=overrides,
        request=forget_request(args),
        seed=args.seed,
        budget_seconds=budget_from_arg(args.budget_seconds, metadata),
        out=args.out,
        device=args.device,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
    )


def forget_request(args: argparse.Namespace) -> tuple[str, Any]:
    if args.forget_ratio is not None:
        if not 0 < args.forget_ratio < 1:
            raise ValueError(f"--forget-ratio {args.forget_ratio}: must be strictly between 0 and 1")
        return ("ratio", args.forget_ratio)
    if args.forget_class:
        return ("class", list(args.forget_class))
    if args.forget_speaker:
        return ("speaker", list(args.forget_speaker))
    if not args.forget_split.is_file():
        raise FileNotFoundError(f"--forget-split {args.forget_split}: file not found")
    return ("split", args.forget_split)


def check_output_path(out: Path, checkpoint: Path) -> None:
    """The output must be a new folder that neither is nor contains nor sits inside the input."""
    out_resolved, checkpoint_resolved = out.resolve(), checkpoint.resolve()
    nested = checkpoint_resolved in out_resolved.parents or out_resolved in checkpoint_resolved.parents
    if out_resolved == checkpoint_resolved or nested:
        raise ValueError(
            f"--out {out}: must be a folder apart from --checkpoint {checkpoint} (the original stays untouched)"
        )
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")


def budget_from_arg(text: str, metadata: dict) -> float | None:
    """'none' -> None; 'auto' -> the recorded training seconds (None if unrecorded); else S > 0."""
    value = text.strip().lower()
    if value == "none":
        return None
    if value == "auto":
        metrics, training = metadata.get("metrics") or {}, metadata.get("training") or {}
        recorded = metrics.get("train_seconds") or training.get("seconds")
        return float(recorded) if recorded else None
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"--budget-seconds {text!r}: expected a number of seconds, 'auto' or 'none'") from None
    if not seconds > 0:
        raise ValueError(f"--budget-seconds {text!r}: must be positive")
    return seconds


# --------------------------------------------------------------------------------------------


def build_split(plan: UnlearnPlan, corpus):
    from ..data.splits import class_split, load_split, sample_split, speaker_split

    kind, value = plan.request
    if kind == "ratio":
        return sample_split(corpus, value, plan.seed)
    if kind == "class":
        return class_split(corpus, value)
    if kind == "speaker":
        return speaker_split(corpus, value)
    return load_split(value, corpus)


def previously_forgotten(metadata: dict, corpus) -> np.ndarray:
    """Corpus positions of every forget set in the checkpoint's history (already unlearned)."""
    from ..data.splits import UnlearningSplit

    positions = [np.zeros(0, dtype=np.int64)]
    for number, entry in enumerate(metadata.get("history") or []):
        split = entry.get("split") if isinstance(entry, dict) else None
        if isinstance(split, dict) and "forget_ids" in split:
            earlier = UnlearningSplit.from_dict(split, source=f"checkpoint history entry {number + 1}")
            positions.append(earlier.forget_indices(corpus))
    return np.unique(np.concatenate(positions))


def load_train_config(metadata: dict):
    from ..config import from_mapping
    from ..training.loop import TrainConfig

    stored = metadata.get("train_config")
    return None if stored is None else from_mapping(TrainConfig, stored, where="checkpoint train_config")


def run(args: argparse.Namespace) -> int:
    plan = plan_from_args(args)
    from ..data.corpus import CorpusError, load_corpus
    from ..data.features import FeatureSpec, load_features
    from ..data.splits import save_split
    from ..methods import unlearn
    from ..models.checkpoint import load_checkpoint, save_checkpoint
    from ..training.data import ArrayData
    from ..training.loop import select_device

    device = select_device(plan.device)
    corpus_meta = plan.metadata["corpus"]
    corpus = load_corpus(corpus_meta["spec"], corpus_meta["task"], cache_dir=plan.cache_dir)
    if corpus_meta.get("fingerprint") and corpus.fingerprint != corpus_meta["fingerprint"]:
        raise CorpusError(
            f"corpus {corpus_meta['spec']!r} changed since checkpoint {plan.checkpoint} was trained "
            f"(fingerprint {corpus.fingerprint[:12]}... vs {corpus_meta['fingerprint'][:12]}...)"
        )
    spec = FeatureSpec(**plan.metadata["feature_spec"])
    original, metadata = load_checkpoint(plan.checkpoint, corpus.label_names, spec, device=device)
    split = build_split(plan, corpus)
    features = load_features(corpus, spec, cache_dir=plan.cache_dir, progress=plan.progress)
    forget_rows = split.forget_indices(corpus)
    retain_rows = np.setdiff1d(split.retain_indices(corpus), previously_forgotten(metadata, corpus))
    data = {
        "forget": ArrayData(features, corpus.labels, forget_rows),
        "retain": ArrayData(features, corpus.labels, retain_rows),
        "test": ArrayData(features, corpus.labels, split.test_indices(corpus)),
    }
    validation = ArrayData(features, corpus.labels, split.validation_indices(corpus))
    save_split(split, plan.split_path)
    print(
        f"{plan.method}: forgetting {len(forget_rows)} of {len(corpus.indices('train'))} training items "
        f"({split.kind} request), retaining {len(retain_rows)}; budget "
        f"{'none' if plan.budget_seconds is None else f'{plan.budget_seconds:.1f} s'}",
        file=sys.stderr,
    )
    result = unlearn(
        plan.method, original, data["forget"], data["retain"], overrides=plan.overrides,
        budget_seconds=plan.budget_seconds, seed=plan.seed, validation=validation,
        train_config=load_train_config(metadata), progress=plan.progress,
    )
    before = subset_accuracies(original, data, split, corpus)
    after = subset_accuracies(result.model, data, split, corpus)
    counts = {"forget_count": len(forget_rows), "retain_count": len(retain_rows)}
    updated = output_metadata(plan, metadata, split, result, before, after, counts)
    save_checkpoint(plan.out, result.model.cpu(), updated)
    print_summary(plan, result, before, after)
    return 0


def subset_accuracies(model, data: dict, split, corpus) -> dict[str, float]:
    """Accuracy on Df, Dr and Dtest; for forgotten classes also Dtest split by class."""
    from ..training.loop import accuracy

    scores = {name: accuracy(model, rows) for name, rows in data.items()}
    forgotten = split.forgotten_labels(corpus)
    if forgotten:
        test = data["test"]
        in_forgotten = np.isin(corpus.labels[test.indices], forgotten)
        scores["test_forgotten_classes"] = accuracy(model, test.subset(np.flatnonzero(in_forgotten)))
        scores["test_other_classes"] = accuracy(model, test.subset(np.flatnonzero(~in_forgotten)))
    return scores


def output_metadata(plan: UnlearnPlan, metadata: dict, split, result, before: dict, after: dict, counts: dict) -> dict:
    """The original's metadata, updated with this request and appended to the history."""
    from ..models.checkpoint import jsonable

    summary = result.to_metadata()
    entry = {
        **summary,
        "split": split.to_dict(),
        "split_path": str(plan.split_path),
        **counts,
        "budget_seconds": plan.budget_seconds,
        "source_checkpoint": str(plan.checkpoint.resolve()),
        "source_weights_sha256": metadata.get("weights_sha256"),
        "accuracy_before": before,
        "accuracy_after": after,
    }
    updated = dict(metadata)
    updated.update(
        method=summary["method"],
        config=summary["config"],
        split=split.to_dict(),
        seconds=summary["seconds"],
        budget_exhausted=summary["budget_exhausted"],
        steps=summary["steps"],
        metrics={f"{name}_accuracy": value for name, value in after.items()},
        history=list(metadata.get("history") or []) + [entry],
    )
    return jsonable(_finite(updated))


def _finite(value: Any) -> Any:
    """NaN (e.g. accuracy of an empty subset) -> None, since checkpoint JSON refuses NaN."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def print_summary(plan: UnlearnPlan, result, before: dict, after: dict) -> None:
    ending = "schedule complete"
    if result.budget_exhausted:
        ending = "budget reached"
    elif result.diverged:
        ending = "diverged, kept the last finite weights"
    print(f"{result.name}: {result.steps} step(s) in {result.seconds:.2f} s ({ending})")
    print(f"{'accuracy':<24}{'before':>10}{'after':>10}")
    for name in after:
        label = SUBSET_LABELS.get(name, f"Dtest {name[len('test_'):].replace('_', ' ')}")
        print(f"{label:<24}{before[name]:>10.4f}{after[name]:>10.4f}")
    print(f"split: {plan.split_path}")
    print(f"checkpoint: {plan.out}")
