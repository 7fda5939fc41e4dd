"""Training benchmark: the default recipes of the small models on FSDD and the embedded corpus.

    .venv/bin/python benchmarks/bench_training.py [--corpora fsdd embedded] [--tasks kws sid]
        [--seed 0] [--set epochs=5 ...] [--cache-dir DIR] [--json results.json]

For each (corpus, task) it trains the task's default model (kws-resnet / sid-xvector) with its
default recipe, exactly as `speech-unlearn train` does, and reports: test accuracy, train
accuracy and the gap between them, the training wall time and CPU time, throughput (training
examples per second), and the share of step time spent in forward / backward / update rather
than in assembling batches from the cached features. Corpus and feature preparation is timed
separately ("prep").

Exits with status 1 when an FSDD run misses --min-accuracy or takes longer than --max-seconds
(the targets: >= 97 % test accuracy in <= 3 min on two CPU cores). The machine's load average is
printed, because wall times on a shared machine depend on it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from speech_unlearning.config import from_mapping, parse_overrides, to_dict
from speech_unlearning.data.corpus import default_cache_dir
from speech_unlearning.data.loaders import load_corpus
from speech_unlearning.models.registry import model_info
from speech_unlearning.training.config import TrainConfig
from speech_unlearning.training.recipes import corpus_arrays, default_model_for, default_train_config, train_original


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", nargs="+", default=["fsdd", "embedded"], help="corpus specs to train on")
    parser.add_argument("--tasks", nargs="+", choices=("kws", "sid"), default=["kws", "sid"], help="tasks to run")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--recipe", choices=("converged", "early-stop"), default="converged", help="training recipe")
    parser.add_argument(
        "--model-option", dest="model_options", action="append", default=[], metavar="KEY=VALUE",
        help="option of the task's default model, e.g. channels=32 (repeatable)",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a recipe setting")
    parser.add_argument("--cache-dir", type=Path, default=None, help="corpus / feature cache (default: the toolkit's cache)")
    parser.add_argument("--min-accuracy", type=float, default=0.97, help="FSDD target test accuracy")
    parser.add_argument("--max-seconds", type=float, default=180.0, help="FSDD target training wall time")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--progress", action="store_true", help="show the training progress bars")
    return parser.parse_args(argv)


def run_one(corpus_spec: str, task: str, args: argparse.Namespace) -> dict:
    prep_start = time.perf_counter()
    corpus = load_corpus(corpus_spec, task, cache_dir=args.cache_dir)
    model_name = default_model_for(task)
    corpus_arrays(corpus, model_info(model_name).input_kind, args.cache_dir, progress=args.progress)  # warm the cache
    prep_seconds = time.perf_counter() - prep_start
    recipe = default_train_config(task, model_name, args.recipe)
    config = from_mapping(TrainConfig, {**to_dict(recipe), **parse_overrides(args.overrides)})
    cpu_start = time.process_time()
    _, result, metrics = train_original(
        corpus, model_name, args.seed, args.cache_dir, config=config, progress=args.progress,
        model_options=parse_overrides(args.model_options, flag="--model-option"),
    )
    return {
        "corpus": corpus.name,
        "task": task,
        "model": model_name,
        "recipe": args.recipe,
        "model_options": parse_overrides(args.model_options, flag="--model-option"),
        "train_size": len(corpus.indices("train")),
        "test_accuracy": metrics["test_accuracy"],
        "validation_accuracy": metrics["validation_accuracy"],
        "train_accuracy": metrics["train_accuracy"],
        "gap": metrics["train_accuracy"] - metrics["test_accuracy"],
        "seconds": result.seconds,
        "cpu_seconds": time.process_time() - cpu_start,
        "prep_seconds": prep_seconds,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "examples_per_second": result.examples / max(result.data_seconds + result.compute_seconds, 1e-9),
        "compute_share": result.compute_share,
        "is_fsdd": corpus.name.startswith("fsdd"),
        "config": to_dict(config),
    }


HEADER = (
    f"{'corpus':<14} {'model':<12} {'test':>6} {'train':>6} {'gap':>6} {'epochs':>7} {'wall s':>7} "
    f"{'cpu s':>7} {'ex/s':>6} {'fwd/bwd':>7} {'prep s':>7}"
)


def table_line(row: dict) -> str:
    """One result row; `epochs` reads kept/run."""
    return (
        f"{row['corpus']:<14} {row['model']:<12} {row['test_accuracy']:>6.3f} {row['train_accuracy']:>6.3f} "
        f"{row['gap']:>6.3f} {row['best_epoch']:>3}/{row['epochs_run']:<3} {row['seconds']:>7.1f} "
        f"{row['cpu_seconds']:>7.1f} {row['examples_per_second']:>6.0f} {row['compute_share']:>7.1%} "
        f"{row['prep_seconds']:>7.1f}"
    )


def failures(rows: list[dict], args: argparse.Namespace) -> list[str]:
    problems = []
    for row in rows:
        if not row["is_fsdd"]:
            continue
        if row["test_accuracy"] < args.min_accuracy:
            problems.append(f"{row['corpus']} {row['model']}: test accuracy {row['test_accuracy']:.3f} < {args.min_accuracy}")
        if row["seconds"] > args.max_seconds:
            problems.append(f"{row['corpus']} {row['model']}: trained {row['seconds']:.0f} s > {args.max_seconds:.0f} s")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = os.getloadavg()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load[0]:.1f} / {load[1]:.1f}, "
        f"cache {args.cache_dir or default_cache_dir()}",
        file=sys.stderr,
    )
    print(HEADER, flush=True)
    rows = []
    for spec in args.corpora:
        for task in args.tasks:
            rows.append(run_one(spec, task, args))
            print(table_line(rows[-1]), flush=True)  # as each run ends: the whole grid takes a while
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    problems = failures(rows, args)
    for problem in problems:
        print(f"target missed: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
