"""`speech-unlearn train`: train the original model for a task and save it as a checkpoint.

    speech-unlearn train --task kws --corpus fsdd --out runs/kws-original
    speech-unlearn train --task sid --corpus speech-commands:../shared/data/speech-commands-mini --out runs/sid-sc
    speech-unlearn train --task kws --corpus embedded --recipe early-stop --out runs/kws-quick
    speech-unlearn train --task sid --corpus voxceleb1:/data/voxceleb1 --model hubert-base \\
        --model-option source=/models/hubert-base --set epochs=3 --out runs/sid-hubert

Every argument is checked (task, model name and options, `--set` keys and values, corpus spec)
before any corpus is loaded or any feature computed. The checkpoint stores the corpus spec, so
`unlearn`, `evaluate` and `forget` reload the same data; `metrics.json` in the same folder holds
the accuracies and the training summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError, field_names, from_mapping, parse_overrides, to_dict
from ..data.corpus import CORPORA, TASKS, CorpusError, parse_corpus_spec
from ..data.loaders import load_corpus
from ..io import atomic_write_json
from ..models.registry import model_info, resolve_options
from ..training.config import TrainConfig

# Set by dedicated flags, so `--set` cannot contradict them.
RESERVED_KEYS = {"seed": "--seed", "progress": "--no-progress"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train an original model on a corpus and save a checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", required=True, choices=TASKS, help="kws (keyword spotting) or sid (speaker identification)")
    parser.add_argument(
        "--corpus",
        default="embedded",
        metavar="SPEC",
        help="embedded | fsdd | fsdd:PATH | speech-commands:PATH | voxceleb1:PATH (default: embedded)",
    )
    parser.add_argument(
        "--model", default=None, help="model name (default: kws-resnet for kws, sid-xvector for sid)"
    )
    parser.add_argument(
        "--model-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model option, repeatable (e.g. source=/models/wav2vec2-base for local pretrained weights)",
    )
    parser.add_argument(
        "--recipe",
        default="converged",
        choices=("converged", "early-stop"),
        help="converged: a fixed schedule that fits the training data, as deployed models are trained (default); "
        "early-stop: the shorter recipe that stops once validation stalls",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for the initial weights, shuffling and dropout (default: 0)")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint folder to write (replaced atomically if it exists)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a training setting, repeatable; keys: "
        + ", ".join(key for key in field_names(TrainConfig) if key not in RESERVED_KEYS),
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache for corpora and features (default: $SPEECH_UNLEARNING_CACHE or ~/.cache/speech_unlearning)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(handler=run)


@dataclass(frozen=True)
class TrainCommand:
    """A fully validated `train` request."""

    task: str
    corpus_spec: str  # normalised: any PATH made absolute
    recipe: str
    model_name: str
    model_options: dict[str, str]
    config: TrainConfig
    out: Path
    cache_dir: Path | None


def normalise_corpus_spec(spec: str) -> str:
    """Check `spec` names a registered corpus (and an existing PATH); return it with PATH absolute."""
    name, path = parse_corpus_spec(spec)
    CORPORA.get(name)  # filled by importing data.loaders; an unknown name lists the valid ones
    if path is None:
        return name
    location = Path(path).expanduser()
    if not location.exists():
        raise CorpusError(f"--corpus {spec!r}: {location} does not exist")
    return f"{name}:{location.resolve()}"


def training_config(
    task: str, model_name: str, overrides: dict[str, str], seed: int, progress: bool, recipe: str = "converged"
) -> TrainConfig:
    """The recipe for (task, model) with `--set` overrides applied, validated field by field.

    A single `train` command has the machine to itself, so it uses every CPU core unless
    `--set threads=N` says otherwise (the recipes pin one thread for the benchmark's workers).
    """
    from ..training.recipes import default_train_config

    for key, flag in RESERVED_KEYS.items():
        if key in overrides:
            raise ConfigError(f"--set {key}: use {flag} instead")
    defaults = {**to_dict(default_train_config(task, model_name, recipe)), "threads": 0}
    values: dict[str, Any] = {**defaults, **overrides}
    config = from_mapping(TrainConfig, values, where="--set")
    return dataclasses.replace(config, seed=seed, progress=progress)


def command_from_args(args: argparse.Namespace) -> TrainCommand:
    """Validate every argument; raises naming the bad one, before any data is touched."""
    from ..training.recipes import default_model_for

    model_name = args.model or default_model_for(args.task)
    info = model_info(model_name)  # unknown name: lists the valid ones
    model_options = parse_overrides(args.model_option, flag="--model-option")
    resolve_options(info.options_class, model_options, model_name)
    config = training_config(
        args.task, model_name, parse_overrides(args.overrides), args.seed, not args.no_progress, args.recipe
    )
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out}: exists and is not a folder")
    return TrainCommand(
        task=args.task,
        corpus_spec=normalise_corpus_spec(args.corpus),
        recipe=args.recipe,
        model_name=model_name,
        model_options=model_options,
        config=config,
        out=args.out,
        cache_dir=args.cache_dir,
    )


def run(args: argparse.Namespace) -> int:
    command = command_from_args(args)
    from ..models.checkpoint import save_checkpoint
    from ..training.recipes import checkpoint_metadata, feature_spec_for_model, train_original

    corpus = load_corpus(command.corpus_spec, command.task, cache_dir=command.cache_dir)
    print(
        f"training {command.model_name} on {corpus.name}: {corpus.num_classes} classes, "
        f"{len(corpus.indices('train'))} train / {len(corpus.indices('validation'))} validation / "
        f"{len(corpus.indices('test'))} test utterances",
        file=sys.stderr,
    )
    model, result, metrics = train_original(
        corpus,
        command.model_name,
        command.config.seed,
        cache_dir=command.cache_dir,
        config=command.config,
        progress=command.config.progress,
        model_options=command.model_options,
    )
    spec = feature_spec_for_model(corpus, command.model_name)
    metadata = checkpoint_metadata(
        corpus, spec, model, command.config, metrics, corpus_spec=command.corpus_spec, train_result=result
    )
    save_checkpoint(command.out, model.cpu(), metadata)
    atomic_write_json(command.out / "metrics.json", metrics_summary(command, corpus.name, metrics, result))
    print_summary(command, metrics, result)
    return 0


def metrics_summary(command: TrainCommand, corpus_name: str, metrics: dict, result) -> dict[str, Any]:
    return {
        "task": command.task,
        "corpus": {"name": corpus_name, "spec": command.corpus_spec},
        "model": command.model_name,
        "recipe": command.recipe,
        "seed": command.config.seed,
        "metrics": metrics,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "budget_exhausted": result.budget_exhausted,
    }


def print_summary(command: TrainCommand, metrics: dict, result) -> None:
    ending = "stopped early" if result.stopped_early else "time budget reached" if result.budget_exhausted else "all epochs"
    print(f"trained {result.epochs_run} epoch(s) in {result.seconds:.1f} s ({ending}; kept epoch {result.best_epoch})")
    print(
        f"accuracy: train {metrics['train_accuracy']:.4f}  validation {metrics['validation_accuracy']:.4f}  "
        f"test {metrics['test_accuracy']:.4f}"
    )
    print(
        f"train - test gap: {100 * metrics['train_test_gap']:.1f} points "
        "(how much better the model does on recordings it trained on than on unseen ones)"
    )
    if metrics.get("augmentation"):
        print(f"augmentation: {metrics['augmentation']}")
    print(f"test accuracy: {metrics['test_accuracy']:.4f}")
    print(f"checkpoint: {command.out}")
