"""`speech-unlearn evaluate`: measure how well a checkpoint forgot its forget set.

    speech-unlearn evaluate --checkpoint runs/kws-forgot-jackson --split splits/jackson.json \\
        --reference runs/kws-retrained --original runs/kws-original

The corpus is reloaded from the spec the checkpoint records (or --corpus), the checkpoint and
the split are checked against it, and every metric (accuracy on Df / Dr / Dtest, loss and SVC
membership inference, representation probe, relearning attack, time) is computed for each
model given. With --reference (a model retrained on Dr) the report adds the gap of every
metric to it and the Avg. Gap. report.json and report.md go to --out (default: the folder
`<checkpoint>-eval` beside the checkpoint); the headline table is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..data.corpus import CorpusError, default_cache_dir, load_corpus

CHECKPOINT_OPTIONS = ("--checkpoint", "--reference", "--original")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="measure forgetting and remaining utility of a checkpoint; writes report.json / report.md",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    folder = dict(type=Path, metavar="DIR")
    parser.add_argument("--checkpoint", required=True, **folder, help="checkpoint folder of the unlearned model")
    parser.add_argument(
        "--split", type=Path, metavar="FILE", help="split JSON file (default: the split recorded in the checkpoint)"
    )
    parser.add_argument("--reference", **folder, help="checkpoint retrained on Dr; enables the gap to retrain")
    parser.add_argument("--original", **folder, help="checkpoint of the model before unlearning, for comparison")
    parser.add_argument("--out", **folder, help="report folder (default: <checkpoint>-eval beside the checkpoint)")
    parser.add_argument(
        "--metrics", metavar="A,B", help="comma-separated metric names to compute (default: all registered metrics)"
    )
    parser.add_argument(
        "--corpus", metavar="SPEC", help="corpus spec to load instead of the one the checkpoint records (data moved)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        metavar="DIR",
        help="cache for corpora and features (default: $SPEECH_UNLEARNING_CACHE or ~/.cache/speech_unlearning)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every subsample and attack (default: 0)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    parser.add_argument(
        "--unlearn-seconds",
        type=float,
        metavar="SECONDS",
        help="unlearning wall time (default: the time of the last request recorded in the checkpoint)",
    )
    parser.add_argument(
        "--retrain-seconds",
        type=float,
        metavar="SECONDS",
        help="retraining wall time (default: recorded in the --reference checkpoint)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(handler=run)


# --- argument checks (before anything is loaded) --------------------------------------------


def parse_metric_names(text: str | None) -> list[str] | None:
    """"a,b" -> ["a", "b"], each checked against the registry (UnknownNameError lists valid names)."""
    from ..evaluation import METRICS

    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--metrics {text!r}: give at least one name; valid names: {', '.join(METRICS.names())}")
    for name in names:
        METRICS.get(name)
    return names


def check_paths(args: argparse.Namespace) -> None:
    """Every checkpoint folder and the split file must exist; --out must not be a file."""
    for option in CHECKPOINT_OPTIONS:
        folder = getattr(args, option.lstrip("-"))
        if folder is not None and not folder.is_dir():
            raise FileNotFoundError(f"{option} {folder}: no such checkpoint folder")
    if args.split is not None and not args.split.is_file():
        raise FileNotFoundError(f"--split {args.split}: no such split file")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out}: exists and is not a folder")


def default_output(checkpoint: Path) -> Path:
    """`runs/model` -> `runs/model-eval`."""
    checkpoint = checkpoint.resolve()
    return checkpoint.parent / f"{checkpoint.name}-eval"


# --- loading ----------------------------------------------------------------------------------


def corpus_request(metadata: dict, override: str | None, checkpoint: Path) -> tuple[str, str]:
    """(corpus spec, task) that reload the corpus a checkpoint was trained on."""
    recorded = metadata.get("corpus") or {}
    spec = override or recorded.get("spec")
    if not spec:
        raise CorpusError(f"checkpoint {checkpoint} does not record its corpus spec; pass --corpus SPEC")
    if recorded.get("task") is None:
        raise CorpusError(f"checkpoint {checkpoint} does not record its task (kws or sid)")
    return spec, recorded["task"]


def feature_spec_of(metadata: dict, checkpoint: Path):
    """The FeatureSpec a checkpoint's model reads, validated field by field."""
    from ..config import from_mapping
    from ..data.features import FeatureSpec

    recorded = metadata.get("feature_spec")
    if not isinstance(recorded, dict):
        raise ValueError(f"checkpoint {checkpoint} records no feature_spec")
    return from_mapping(FeatureSpec, recorded, where=f"checkpoint {checkpoint} feature_spec")


def load_model_for(folder: Path, option: str, corpus, feature_spec, device) -> tuple[Any, dict]:
    """(model in eval mode on `device`, metadata) of a checkpoint made for `corpus` and `feature_spec`.

    load_checkpoint checks the label names and the feature spec (every model of one report reads
    the same feature array); the corpus fingerprint must match too, so a checkpoint trained on
    another version of the data is refused.
    """
    from ..models.checkpoint import load_checkpoint

    model, metadata = load_checkpoint(
        folder, expect_label_names=corpus.label_names, expect_feature_spec=feature_spec, device=device
    )
    recorded = metadata.get("corpus") or {}
    if recorded.get("fingerprint") != corpus.fingerprint:
        raise CorpusError(
            f"{option} {folder}: trained on corpus {recorded.get('name')!r} version "
            f"{str(recorded.get('fingerprint'))[:12]}..., but {corpus.name!r} is now version "
            f"{corpus.fingerprint[:12]}... (the data changed, or it is another corpus)"
        )
    return model, metadata


def load_split_for(path: Path | None, metadata: dict, corpus, checkpoint: Path):
    """The split from `path`, else the one the checkpoint records; checked against `corpus`."""
    from ..data.splits import UnlearningSplit, load_split

    if path is not None:
        return load_split(path, corpus)
    stored = metadata.get("split")
    if not isinstance(stored, dict):
        raise ValueError(f"checkpoint {checkpoint} records no split; pass --split FILE")
    split = UnlearningSplit.from_dict(stored, source=f"split recorded in checkpoint {checkpoint}")
    split.forget_indices(corpus)  # CorpusError if it does not fit this corpus
    return split


def unlearn_seconds_of(metadata: dict) -> float | None:
    """Wall time of the last deletion request the checkpoint records (None for an original model)."""
    history = metadata.get("history") or []
    seconds = history[-1].get("seconds") if history else None
    return float(seconds) if seconds is not None else None


def retrain_seconds_of(metadata: dict) -> float | None:
    """Training time of a retrained checkpoint: its `retrain` request, else its recorded training time."""
    history = metadata.get("history") or []
    if history and history[-1].get("method") == "retrain" and history[-1].get("seconds") is not None:
        return float(history[-1]["seconds"])
    seconds = (metadata.get("metrics") or {}).get("train_seconds")
    return float(seconds) if seconds is not None else None


# --- the command ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from ..data.features import load_features
    from ..evaluation import evaluate_unlearning, format_summary, write_report
    from ..models.checkpoint import read_metadata
    from ..training.loop import select_device

    metrics = parse_metric_names(args.metrics)
    check_paths(args)
    device = select_device(args.device)
    subject_metadata = read_metadata(args.checkpoint)
    spec, task = corpus_request(subject_metadata, args.corpus, args.checkpoint)
    cache_dir = args.cache_dir or default_cache_dir()
    corpus = load_corpus(spec, task, cache_dir=cache_dir)
    feature_spec = feature_spec_of(subject_metadata, args.checkpoint)
    models = {
        option: load_model_for(getattr(args, option.lstrip("-")), option, corpus, feature_spec, device)
        for option in CHECKPOINT_OPTIONS
        if getattr(args, option.lstrip("-")) is not None
    }
    model, metadata = models["--checkpoint"]
    split = load_split_for(args.split, metadata, corpus, args.checkpoint)
    features = load_features(corpus, feature_spec, cache_dir, progress=not args.no_progress)
    original, _ = models.get("--original", (None, {}))
    reference, reference_metadata = models.get("--reference", (None, {}))
    unlearn_seconds = args.unlearn_seconds if args.unlearn_seconds is not None else unlearn_seconds_of(metadata)
    retrain_seconds = args.retrain_seconds
    if retrain_seconds is None:
        retrain_seconds = retrain_seconds_of(reference_metadata)
    report = evaluate_unlearning(
        model,
        features,
        corpus,
        split,
        original=original,
        reference=reference,
        unlearn_seconds=unlearn_seconds,
        retrain_seconds=retrain_seconds,
        metrics=metrics,
        seed=args.seed,
        progress=not args.no_progress,
    )
    json_path, md_path = write_report(args.out or default_output(args.checkpoint), report)
    print(format_summary(report))
    print(f"\nreport: {json_path} and {md_path}", file=sys.stderr)
    return 0
