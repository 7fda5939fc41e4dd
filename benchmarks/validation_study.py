r"""Score a method's hyper-parameters on a finished grid, with the validation split as Dtest.

    .venv/bin/python benchmarks/validation_study.py RUN_DIR [RUN_DIR ...] METHOD '[{}, {"lr": 3e-4}]' \
        [--only "kws kws-resnet seed=0"] [--cache-dir DIR] [--cap-seconds 10]

For every Retrain cell of the grids (filtered by --only, a substring of the Retrain run's label)
and every override set, it unlearns the cell's Original with METHOD and prints the Avg. Gap to
the cell's Retrain, where the validation split stands in for Dtest (the benchmark's `--tune`
criterion). Several grids (e.g. one preset's folder and its extra seeds) pool their cells. It
ends with one line per override set: the per-run Avg. Gap (mean ± std), the gap of the means
and the time as a share of Retrain's (mean and worst cell). Test data never enters, so the
choice it informs is a fair one. It reuses the grids' models and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from grid_cells import describe_gap, grid_cells, mean_std
from speech_unlearning.config import ConfigError
from speech_unlearning.evaluation import evaluate_unlearning, gap_of_means
from speech_unlearning.experiments.plan import load_methods
from speech_unlearning.experiments.stages import TUNE_METRICS, ValidationAsTest
from speech_unlearning.methods import parse_method_config, split_method_name, unlearn
from speech_unlearning.registry import UnknownNameError
from speech_unlearning.training.config import TrainConfig


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR",
                        help="finished `speech-unlearn bench` run folders (their cells are pooled)")
    parser.add_argument("method", help="registered method name, e.g. calibrated or scrub+superloss")
    parser.add_argument("overrides", type=json.loads, help="JSON list of override mappings, e.g. '[{}, {\"lr\": 3e-4}]'")
    parser.add_argument("--only", action="append", default=[], help="keep cells whose label contains this (repeatable)")
    parser.add_argument("--cache-dir", default=None, help="the grid's corpus / feature cache")
    parser.add_argument("--cap-seconds", type=float, default=10.0, help="unlearning budget cap (the quick preset's)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    torch.set_num_threads(1)
    load_methods()
    for overrides in args.overrides:  # a typo fails here, before any model is loaded
        try:
            parse_method_config(*split_method_name(args.method), overrides, args.method)
        except (ConfigError, UnknownNameError) as error:
            raise SystemExit(f"{args.method} {json.dumps(overrides)}: {error}") from None
    scored: dict[str, list[Scored]] = {json.dumps(overrides): [] for overrides in args.overrides}
    for cell in (cell for run_dir in args.run_dirs for cell in grid_cells(run_dir, args.cache_dir, args.only)):
        split = ValidationAsTest(cell.split)
        print(f"== {cell.label} (Retrain {cell.retrain_seconds:.1f} s)", flush=True)
        # The cell's data and settings, shared by every override set.
        forget = cell.data(cell.split.forget_indices(cell.corpus))
        retain = cell.data(cell.split.retain_indices(cell.corpus))
        validation = cell.data(cell.split.validation_indices(cell.corpus))
        train_config, seed = TrainConfig(**cell.original_metadata["train_config"]), int(cell.config["seed"])
        for overrides in args.overrides:
            key = json.dumps(overrides)
            result = unlearn(args.method, cell.original, forget, retain, overrides=overrides,
                             budget_seconds=min(cell.retrain_seconds, args.cap_seconds), seed=seed,
                             validation=validation, train_config=train_config)
            report = evaluate_unlearning(result.model, cell.features, cell.corpus, split, reference=cell.retrain,
                                         metrics=list(TUNE_METRICS), seed=seed, progress=False)
            print(f"  {key:40s} {describe_gap(report['gap_to_retrain'])}; {result.seconds:.1f} s", flush=True)
            scored[key].append(Scored(report, result.seconds / cell.retrain_seconds))
    print_summary(scored)
    return 0


@dataclass
class Scored:
    report: dict[str, Any]  # evaluate_unlearning's report, validation as Dtest
    time_ratio: float  # unlearning seconds / the cell's Retrain seconds


def print_summary(scored: dict[str, list[Scored]]) -> None:
    """One line per override set, pooled over every cell it was scored on."""
    print("== summary over the cells: per-run Avg. Gap (pp), gap of the means (pp), time / Retrain (mean, worst)")
    for overrides, runs in scored.items():
        if not runs:
            continue
        pooled = gap_of_means([(run.report["models"]["unlearned"], run.report["models"]["retrained"]) for run in runs])
        ratios = [run.time_ratio for run in runs]
        print(f"  {overrides:40s} {mean_std([run.report['gap_to_retrain']['avg_gap_pp'] for run in runs])} | "
              f"{pooled['avg_gap_pp']:.2f} | {100 * statistics.mean(ratios):.1f} %, {100 * max(ratios):.1f} % "
              f"({len(runs)} cells)")


if __name__ == "__main__":
    raise SystemExit(main())
